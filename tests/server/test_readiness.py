"""Readiness and teardown of the local-process backend with stand-in servers (plain Python)."""

import sys
import time
from pathlib import Path

import pytest

from pipeline.server.base import ServerExited, ServerSpec, ServerTimeout
from pipeline.server.local import LocalProcessBackend
from pipeline.server.preflight import free_port, port_free
from pipeline.server.readiness import probe, wait_ready

HTTP_400_SERVER = """
import http.server, sys, time
time.sleep(float(sys.argv[2]))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(400 if self.path == "/api/chat" else 404); self.end_headers()
    def log_message(self, *a): pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def backend(tmp_path: Path, code: str, *args: str) -> LocalProcessBackend:
    port = free_port()
    spec = ServerSpec([sys.executable, "-c", code, str(port), *args], port=port, run_id="t")
    return LocalProcessBackend(spec, tmp_path)


def test_ready_when_the_route_answers_400(tmp_path: Path) -> None:
    b = backend(tmp_path, HTTP_400_SERVER, "0.5")
    with b:
        waited = wait_ready(b, timeout_s=20)
        assert waited > 0.4  # it waited for the server's own 0.5 s start-up
        assert probe(b.host, b.port)
        assert "listening" in b.logs()
    assert b.exit_code() == -1 and port_free(b.port)  # stopped, port released


def test_exit_during_startup_fails_at_once_with_code_and_log(tmp_path: Path) -> None:
    b = backend(tmp_path, "import sys; print('weights missing: boom', flush=True); sys.exit(3)")
    with b:
        with pytest.raises(ServerExited, match="exited with code 3") as err:
            wait_ready(b, timeout_s=60)  # the exit is seen, not the 60 s timeout (a ServerTimeout)
        assert "weights missing: boom" in str(err.value)


def test_never_opening_the_port_times_out_with_log(tmp_path: Path) -> None:
    b = backend(tmp_path, "import time; print('loading...', flush=True); time.sleep(60)")
    with b:
        with pytest.raises(ServerTimeout, match=r"not ready after 1 s \(port \d+ closed\)") as err:
            wait_ready(b, timeout_s=1.0)
        assert "loading..." in str(err.value)
    assert b.proc is None


def test_stop_kills_the_whole_group_after_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="pipeline")
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    b = backend(tmp_path, code)
    b.start()
    deadline = time.monotonic() + 10
    while not b.logs().strip().splitlines()[1:] and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(b.logs().strip().splitlines()[-1])
    t0 = time.monotonic()
    b.stop(grace_s=1.0)  # ignores SIGTERM: killed after the grace
    assert time.monotonic() - t0 > 0.9  # the grace was given
    assert "still running 1 s after SIGTERM; killing" in caplog.text  # then the kill path ran
    assert (
        not Path(f"/proc/{child}").exists()
        or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
    )
    b.stop()  # twice is fine


def test_gpu_index_counts_within_the_devices_slurm_gave_us() -> None:
    from pipeline.server.base import PreflightError
    from pipeline.server.local import visible_device

    assert visible_device("1", {}) == "1"
    assert visible_device("0", {"CUDA_VISIBLE_DEVICES": "2,3"}) == "2"
    assert visible_device("1", {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    with pytest.raises(PreflightError, match=r"not among the 2 device\(s\)"):
        visible_device("2", {"CUDA_VISIBLE_DEVICES": "2,3"})


def test_a_server_command_that_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    from pipeline.server.base import ServerError

    spec = ServerSpec(["/nonexistent/python", "-m", "moshi.server"], port=free_port())
    b = LocalProcessBackend(spec, tmp_path)
    with pytest.raises(ServerError, match="cannot run the server command '/nonexistent/python'"):
        b.start()
    b.stop()  # nothing to stop, no error


def test_an_answer_from_a_foreign_server_on_our_port_is_not_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another job's server answers on our port while ours loads: never taken for ours."""
    import subprocess

    caplog.set_level("WARNING", logger="pipeline")
    port = free_port()
    foreign = subprocess.Popen([sys.executable, "-c", HTTP_400_SERVER, str(port), "0"])
    try:
        deadline = time.monotonic() + 10
        while not probe("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert probe("127.0.0.1", port)  # the neighbour answers as a ready server would
        ours = LocalProcessBackend(
            ServerSpec([sys.executable, "-c", HTTP_400_SERVER, str(port), "1.0"], port, run_id="t"),
            tmp_path,
        )
        with ours, pytest.raises(ServerExited, match="exited with code"):
            wait_ready(ours, timeout_s=30)  # ours cannot bind the port and dies: seen as such
        assert "answers, but not from our server" in caplog.text
    finally:
        foreign.kill()
        foreign.wait()


def test_two_runs_never_reserve_the_same_port() -> None:
    from pipeline.server.preflight import choose_ports

    first = free_port()
    a = choose_ports(first, 1)
    b = choose_ports(first, 2)  # another run, same --port: the next free ones
    try:
        assert a.ports == [first] and first not in b.ports and len(set(b.ports)) == 2
    finally:
        a.release()
        b.release()
    c = choose_ports(first, 1)  # released: free for the next run again
    assert c.ports == [first]
    c.release()

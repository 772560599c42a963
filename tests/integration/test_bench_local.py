"""`bench` end to end with the local runtime and the REAL tiny moshi server: two servers, a
server killed mid-sample, SIGINT mid-run, start-up faults, pre-flight errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.dataset.synthesize import SynthSpec, synthesize
from pipeline.server.cleanup import find_processes
from tests.integration.runs import finish, lines, manifest, start, wait_for
from tests.real_server import REPO_ROOT, tiny_bench_args

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fdb") / "v1.5"
    synthesize(root, SynthSpec(per_task=2, seconds_trailing=0.5, include_silence=True))
    return root


def bench(
    tmp_path: Path, run: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return start(
        "bench",
        "--run-dir",
        str(tmp_path / run),
        "--hf-cache",
        str(tmp_path / "hf"),
        "--port",
        "0",
        "--startup-timeout",
        "120",
        "--retry-backoff",
        "0.2",
        "--gpus",
        "none",  # no GPU here; a test may name devices after this
        *args,
        env=env,
    )


def test_two_servers_share_one_dataset(tiny_model_dir: Path, dataset: Path, tmp_path: Path) -> None:
    code, out = finish(
        bench(
            tmp_path,
            "r",
            "--root",
            str(dataset),
            "--gpus",
            "cpu0,cpu1",
            "--overwrite",
            *tiny_bench_args(tiny_model_dir),
        )
    )
    assert code == 0, out
    recs = lines(tmp_path / "r")
    assert len(recs) == 8 and {r["status"] for r in recs} == {"ok"}
    assert len({r["server"] for r in recs}) == 2  # both servers took samples
    m = manifest(tmp_path / "r")
    assert m["status"] == "finished" and len(m["servers"]) == 2
    assert [s["gpu"] for s in m["servers"]] == [None, None]
    assert all(s["env"]["NO_TORCH_COMPILE"] == "1" for s in m["servers"])
    for k in ("starting_s", "warmup_s", "streaming_s", "stopping_s", "to_first_session_s"):
        assert m["timings"][k] >= 0
    for s in m["servers"]:
        assert "Running on" in Path(s["log"]).read_text()  # server log saved in the run dir
    assert find_processes(m["run_id"]) == []  # nothing left running


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],  # scancel; a dropped SSH session
)
def test_a_stopping_signal_during_startup_leaves_nothing(
    tmp_path: Path, dataset: Path, sig: signal.Signals, code: int
) -> None:
    slow = f"{sys.executable} -c 'import time; time.sleep(60)'"
    proc = bench(
        tmp_path,
        "r",
        "--root",
        str(dataset),
        "--runtime",
        "local",
        "--gpus",
        "none",
        "--profile",
        "moshi",
        "--server-command",
        slow,
        "--server-arg=--moshi-weight=x",
    )
    wait_for((tmp_path / "r" / "manifest.json").exists, 30)
    run_id = manifest(tmp_path / "r")["run_id"]
    wait_for(lambda: find_processes(run_id) != [], 30)
    proc.send_signal(sig)
    rc, out = finish(proc, timeout=60)
    assert rc == code, out
    assert f"interrupted by {sig.name}" in out
    assert find_processes(run_id) == []
    assert manifest(tmp_path / "r")["status"] == "interrupted"


@pytest.mark.parametrize(
    ("server", "message", "code"),
    [
        (
            "import sys; print('CUDA out of memory', flush=True); sys.exit(7)",
            "exited with code 7 during start-up",
            1,
        ),
        ("import time; print('loading', flush=True); time.sleep(60)", "not ready after 3 s", 1),
    ],
)
def test_startup_faults_fail_with_the_server_log(
    tmp_path: Path, dataset: Path, server: str, message: str, code: int
) -> None:
    t0 = time.monotonic()
    rc, out = finish(
        bench(
            tmp_path,
            "r",
            "--root",
            str(dataset),
            "--runtime",
            "local",
            "--gpus",
            "none",
            "--profile",
            "moshi",
            "--startup-timeout",
            "3",
            "--server-command",
            f'{sys.executable} -c "{server}"',
            "--server-arg=--moshi-weight=x",
        ),
        timeout=60,
    )
    assert rc == code, out
    assert message in out
    assert ("CUDA out of memory" in out) or ("loading" in out)  # the log tail is shown
    assert time.monotonic() - t0 < 30
    m = manifest(tmp_path / "r")
    assert m["status"] == "failed" and message in m["error"]
    assert find_processes(m["run_id"]) == []


def test_preflight_errors_name_the_fix(tmp_path: Path, dataset: Path) -> None:
    base = ["--root", str(dataset), "--gpus", "none", "--profile", "moshi"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = str(s.getsockname()[1])
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "bench",
                *base,
                "--runtime",
                "local",
                "--port",
                taken,
                "--server-command",
                "true",
                "--server-arg=--moshi-weight=x",
                "--run-dir",
                str(tmp_path / "p"),
            ],
            check=False,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2 and f"port {taken} is already in use" in proc.stderr
    cases = [
        (
            ["--runtime", "apptainer", "--sif", str(tmp_path / "x.sif")],
            {"PATH": "/usr/bin:/bin"},
            "neither apptainer nor singularity is on PATH",
        ),
        (
            ["--runtime", "docker"],
            {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
            "Docker daemon is unreachable",
        ),
        (
            ["--runtime", "local", "--gpus", "0", "--server-command", "true"],
            {"PATH": "/usr/bin:/bin"},
            "nvidia-smi is not on PATH",
        ),
    ]
    for extra, env, message in cases:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "bench",
                *base,
                *extra,
                "--run-dir",
                str(tmp_path / "p2"),
            ],
            check=False,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr


def test_two_runs_with_the_same_port_each_use_only_their_own_server(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two jobs on one node, both with the default-style fixed port: both finish, each on its
    own server (a second run takes the next port; never the other run's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = []
    for name in ("a", "b"):
        root = tmp_path / name / "v1.5"
        synthesize(root, SynthSpec(tasks=("user_interruption",), per_task=1, seconds_trailing=0.5))
        procs.append(
            bench(
                tmp_path / name,
                "r",
                "--root",
                str(root),
                "--port",
                port,
                "--no-warmup",
                *tiny_bench_args(tiny_model_dir),
            )
        )
    results = [finish(p) for p in procs]
    for code, out in results:
        assert code == 0, out
    manifests = [manifest(tmp_path / name / "r") for name in ("a", "b")]
    urls = [m["server_urls"][0] for m in manifests]
    assert len(set(urls)) == 2 and any(f":{port}/" in u for u in urls)
    for name, m in zip(("a", "b"), manifests, strict=True):
        (rec,) = lines(tmp_path / name / "r")
        assert rec["status"] == "ok" and rec["session_index"] == 0  # its server's first session
        assert m["sessions"] == {m["servers"][0]["name"]: 1}

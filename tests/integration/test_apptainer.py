"""The REAL Apptainer (the system's, else Debian sid's via scripts/apptainer-setup.sh) with the
CPU SIF of apptainer.def (NVIDIA's PersonaPlex server with tiny random weights, built offline):

- `apptainer run SIF --root DATA`: the whole benchmark inside the image, the server its child;
- `bench --runtime apptainer --sif SIF`: the server image driven from outside, on loopback only;
- SIGTERM (Slurm, kill) and Ctrl-C leave no process, no port and no partial output;
- the host's ~/.local, PYTHONPATH and `--cleanenv` cannot break the image's packages.

Each test waits for observed states (the client inside a session), never a sleep."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from pipeline.server.cleanup import find_processes
from tests.apptainer_support import ensure_apptainer, ensure_cpu_sif
from tests.integration.runs import (
    STARTED,
    finish,
    in_session,
    lines,
    manifest,
    server_port,
    start,
    wait_for,
)
from tests.real_server import REPO_ROOT

# the first test of a run may build the SIF (minutes on 2 cores; then it is up to date)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

SHADOWED = ("numpy", "torch", "moshi", "pipeline", "websockets")


@pytest.fixture(scope="module")
def sif() -> Path:
    return ensure_cpu_sif("personaplex")


@pytest.fixture
def model(personaplex_model_dir: Path) -> Path:
    return personaplex_model_dir.resolve()


def server_flags(model: Path, hf: Path) -> list[str]:
    """`bench` options for the tiny PersonaPlex server in the image (model bound at its path)."""
    return [
        "--profile", "personaplex", "--gpus", "none", "--port", "0", "--hf-cache", str(hf),
        "--server-command", f"python /opt/tiny_personaplex/serve.py --tiny-model {model}",
        "--server-arg=--device=cpu", f"--server-arg=--moshi-weight={model / 'model.safetensors'}",
        "--startup-timeout", "120", "--retry-backoff", "0.2", "--overwrite",
    ]  # fmt: skip


def apptainer(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.Popen[str]:
    """`apptainer ARGS` as a user runs it: its own session (Ctrl-C reaches its whole group)."""
    proc = subprocess.Popen(
        [ensure_apptainer(), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def shadowing_packages(folder: Path) -> Path:
    """Packages named like the image's that break on import (a stale host install)."""
    for name in SHADOWED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text("raise ImportError('a HOST package')\n")
    return folder


def outputs_complete(dataset: Path, run: Path) -> None:
    """Every recorded sample has both outputs; no partial file anywhere."""
    for r in lines(run):
        folder = Path(r["input"]).parent
        assert (folder / "output.wav").exists() and (folder / "output_text.json").exists()
    assert list(dataset.rglob("*.partial")) == []


def test_apptainer_run_benchmarks_inside_the_image_despite_host_python_settings(
    sif: Path, model: Path, dataset: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    user_site = shadowing_packages(home / ".local" / "lib" / "python3.11" / "site-packages")
    pythonpath = shadowing_packages(tmp_path / "pythonpath")
    cwd = shadowing_packages(tmp_path / "cwd")  # like a checkout of this repository
    # the image sees them (binds), and they do break its Python when they get through
    code, out = finish(
        apptainer("exec", "--home", str(home), str(sif), "ls", str(user_site / "numpy")),
        timeout=120,
    )
    assert code == 0 and "__init__.py" in out, out
    code, out = finish(
        apptainer(
            "exec", str(sif), "python", "-c", "import numpy",
            env={"APPTAINERENV_PYTHONPATH": str(pythonpath)},
        ),
        timeout=120,
    )  # fmt: skip
    assert code != 0 and "a HOST package" in out, out
    code, out = finish(
        apptainer(
            "exec", "--env", "PYTHONSAFEPATH=", str(sif), "python", "-m", "pipeline", "--help",
            cwd=cwd,
        ),
        timeout=120,
    )  # fmt: skip
    assert code != 0 and "a HOST package" in out, out

    run = tmp_path / "run"
    proc = apptainer(
        "run", "--home", str(home), "--bind", str(model), str(sif),
        "--root", str(dataset), "--run-dir", str(run), *server_flags(model, tmp_path / "hf"),
        env={"PYTHONPATH": str(pythonpath)}, cwd=cwd,
    )  # fmt: skip
    code, out = finish(proc, timeout=600)
    assert code == 0, out
    recs = lines(run)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"ok"}, out
    m = manifest(run)
    assert m["status"] == "finished" and m["runtime"] == "local"  # the runner inside the image
    (server,) = m["servers"]
    assert server["command"][:2] == ["python", "/opt/tiny_personaplex/serve.py"]
    assert find_processes(m["run_id"]) == []
    outputs_complete(dataset, run)


def test_errors_inside_the_image_give_the_runners_exit_codes(
    sif: Path, model: Path, dataset: Path, tmp_path: Path
) -> None:
    # a server that cannot start: the run fails (exit 1), naming the server's exit
    crash = "python -c \"import sys; print('no weights', flush=True); sys.exit(3)\""
    args = server_flags(model, tmp_path / "hf")
    args[args.index("--server-command") + 1] = crash
    code, out = finish(
        apptainer("run", str(sif), "--root", str(dataset), "--run-dir", str(tmp_path / "r"), *args),
        timeout=300,
    )
    assert code == 1, out
    assert "exited with code 3 during start-up" in out and "no weights" in out
    # data the image cannot see: a usage error (exit 2) that says to bind it
    code, out = finish(
        apptainer("run", "--contain", str(sif), "--root", str(dataset), *args), timeout=120
    )
    assert code == 2, out
    assert f"dataset root {dataset} does not exist" in out and "apptainer run --bind" in out


def inner_bench(proc: subprocess.Popen[str]) -> psutil.Process:
    """The `pipeline bench` process that `apptainer run` started inside the image."""
    found: list[psutil.Process] = []

    def seen() -> bool:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "bench" in child.cmdline() and "pipeline" in child.cmdline():
                    found.append(child)
                    return True
            except psutil.NoSuchProcess:
                continue
        return False

    wait_for(seen, 120)
    return found[0]


@pytest.mark.parametrize("how", ["SIGTERM to apptainer", "Ctrl-C"])
def test_signals_to_apptainer_run_leave_no_process_port_or_partial_output(
    how: str, sif: Path, model: Path, dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = apptainer(
        "run", "--cleanenv", "--env", "HF_HUB_OFFLINE=1", "--bind", str(model), str(sif),
        "--root", str(dataset), "--run-dir", str(run), "--pace", "realtime",
        *server_flags(model, tmp_path / "hf"),
    )  # fmt: skip
    bench = inner_bench(proc)
    wait_for(lambda: (run / "manifest.json").exists() and len(lines(run)) >= 1, 300)
    port = server_port(run)
    wait_for(lambda: in_session(bench.pid, port))  # inside the next sample's session
    run_id = manifest(run)["run_id"]
    assert find_processes(run_id)  # the server is up
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)  # the terminal signals the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # Slurm, kill: apptainer alone
    code, out = finish(proc, timeout=120)
    assert code == (130 if how == "Ctrl-C" else 143), out
    m = manifest(run)
    assert m["status"] == "interrupted" and m["counts"]["ok"] >= 1, out
    assert find_processes(run_id) == []
    listening = psutil.net_connections("tcp")
    assert not [c for c in listening if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    outputs_complete(dataset, run)


def test_bench_runtime_apptainer_serves_from_the_image_on_loopback_only(
    sif: Path, model: Path, dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = start(
        "bench", "--runtime", "apptainer", "--sif", str(sif), "--mount", f"{model}:{model}",
        "--root", str(dataset), "--run-dir", str(run), "--pace", "realtime",
        *server_flags(model, tmp_path / "hf"),
    )  # fmt: skip
    wait_for((run / "manifest.json").exists, 300)
    port = server_port(run)
    wait_for(lambda: in_session(proc.pid, port), 300)
    # PersonaPlex ignores --host: the bind guard (through APPTAINERENV_PYTHONPATH) holds it
    listening = {
        c.laddr.ip
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }
    assert listening == {"127.0.0.1"}
    code, out = finish(proc, timeout=600)
    assert code == 0, out
    recs = lines(run)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"ok"}
    m = manifest(run)
    assert m["status"] == "finished" and m["runtime"] == "apptainer"
    (server,) = m["servers"]
    assert server["command"][:2] == [ensure_apptainer(), "exec"]
    assert server["image_sha256"] and "1.4" in str(server.get("runtime_version")), server
    assert "moshi-personaplex" in str(server.get("labels")), server
    assert find_processes(m["run_id"]) == []
    outputs_complete(dataset, run)

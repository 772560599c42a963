"""`bench --runtime docker` with a REAL Docker engine and the CPU variant of containers/Dockerfile
(the upstream moshi server with tiny random weights inside): end to end, and every fault ending
with nothing left running and the completed samples kept."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from pipeline.server.base import LABEL_RUN, LABEL_TOOL
from tests.docker_support import docker_tiny_args, ensure_cpu_image, ensure_engine
from tests.integration.runs import finish, lines, manifest, start
from tests.real_server import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def image() -> str:
    ensure_engine()
    return ensure_cpu_image()


@pytest.fixture(scope="module")
def client(image: str) -> Iterator[Any]:
    c = docker.from_env()
    yield c
    c.close()


def bench(
    image: str,
    model: Path,
    tmp_path: Path,
    *args: str,
    server_command: str = "python /opt/tiny_moshi/serve.py",
) -> subprocess.Popen[str]:
    return start(
        "bench",
        *docker_tiny_args(image, model.resolve(), tmp_path / "r", tmp_path / "hf"),
        "--startup-timeout",
        "120",
        "--retry-backoff",
        "0.2",
        "--overwrite",
        "--server-command",
        server_command,
        *args,
    )


def containers_of(client: Any, run_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))


def test_docker_end_to_end(
    image: str, tiny_model_dir: Path, dataset: Path, tmp_path: Path, client: Any
) -> None:
    # a relative cache folder (Docker itself only takes absolute paths)
    relative_cache = os.path.relpath(tmp_path / "hf", REPO_ROOT)
    code, out = finish(
        bench(image, tiny_model_dir, tmp_path, "--root", str(dataset), "--hf-cache", relative_cache)
    )
    assert code == 0, out
    run = tmp_path / "r"
    recs = lines(run)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"ok"}
    m = manifest(run)
    assert m["status"] == "finished" and m["runtime"] == "docker"
    (server,) = m["servers"]
    assert server["image_id"].startswith("sha256:") and server["network_mode"] == "bridge"
    assert server["command"][:2] == ["python", "/opt/tiny_moshi/serve.py"]
    # --gpus none alone: the server is told --device cpu (its default is cuda) and sees no GPU
    assert server["command"][server["command"].index("--device") + 1] == "cpu"
    assert server["device"] == "cpu" and server["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert server["env"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "Running on" in Path(server["log"]).read_text()  # log saved before removal
    assert containers_of(client, m["run_id"]) == []  # nothing left
    for r in recs:
        folder = Path(r["input"]).parent
        assert (folder / "output.wav").exists() and (folder / "output_text.json").exists()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "python -c \"import sys; print('model file missing', flush=True); sys.exit(3)\"",
            "exited with code 3 during start-up",
        ),
        (
            "python -c \"import time; print('loading', flush=True); time.sleep(120)\"",
            "not ready after 5 s",
        ),
    ],
)
def test_startup_faults_fail_with_the_log_and_leave_nothing(
    image: str,
    tiny_model_dir: Path,
    dataset: Path,
    tmp_path: Path,
    client: Any,
    command: str,
    message: str,
) -> None:
    t0 = time.monotonic()
    code, out = finish(
        bench(
            image,
            tiny_model_dir,
            tmp_path,
            "--root",
            str(dataset),
            "--startup-timeout",
            "5",
            server_command=command,
        ),
        timeout=120,
    )
    assert code == 1, out
    assert message in out
    assert "model file missing" in out or "loading" in out  # the server's own log lines
    assert time.monotonic() - t0 < 60
    m = manifest(tmp_path / "r")
    assert m["status"] == "failed"
    assert containers_of(client, m["run_id"]) == []


def test_preflight_port_taken_and_no_gpu_runtime(
    image: str, tiny_model_dir: Path, dataset: Path, tmp_path: Path, client: Any
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = str(s.getsockname()[1])
        code, out = finish(
            bench(image, tiny_model_dir, tmp_path, "--root", str(dataset), "--port", taken),
            timeout=60,
        )
    assert code == 2 and f"port {taken} is already in use" in out
    code, out = finish(
        bench(image, tiny_model_dir, tmp_path, "--root", str(dataset), "--gpus", "0"), timeout=60
    )
    assert code == 2, out
    assert "NVIDIA Container Toolkit" in out and "could not select device driver" in out
    leftovers = client.containers.list(all=True, filters={"label": LABEL_TOOL})
    assert [c.name for c in leftovers if c.status == "running"] == []


def test_cleanup_removes_a_crashed_runs_container(image: str, client: Any) -> None:
    labels = {LABEL_TOOL: "1", LABEL_RUN: "crashed-docker-run"}
    client.containers.run(
        image,
        ["sleep", "120"],
        detach=True,
        labels=labels,
        name="fdb-pipeline-crashed-docker-run-0",
    )
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "cleanup", "--run-id", "crashed-docker-run"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "removed container fdb-pipeline-crashed-docker-run-0" in out.stderr
    assert containers_of(client, "crashed-docker-run") == []

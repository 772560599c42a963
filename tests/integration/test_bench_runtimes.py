"""`bench` faults that every runtime must survive, with the REAL tiny moshi server: a server
killed mid-sample is restarted and the sample retried; SIGINT mid-run tears everything down and
keeps what finished. One test per fault, parametrized over the runtimes (local process, Docker,
Apptainer). Each waits for an observed state - the client inside a sample's session
- before it strikes, and asserts that the path under test is the one that ran."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.server.base import LABEL_RUN
from pipeline.server.cleanup import find_processes
from tests.integration.runs import finish, lines, manifest, start, wait_in_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class RuntimeUnderTest:
    name: str
    args: Callable[[Path], list[str]]  # bench options for a run dir
    kill_server: Callable[[str], None]  # of a run id
    left_behind: Callable[[str], list[Any]]  # processes / containers of a run id


def _local(model: Path, hf: Path) -> RuntimeUnderTest:
    from tests.real_server import tiny_bench_args

    def kill(run_id: str) -> None:
        (pid, _), *_ = find_processes(run_id)
        os.killpg(os.getpgid(pid), signal.SIGKILL)

    args = ["--hf-cache", str(hf), "--port", "0", "--gpus", "none", *tiny_bench_args(model)]
    return RuntimeUnderTest(
        "local", lambda run: ["--run-dir", str(run), *args], kill, find_processes
    )


def _docker(model: Path, hf: Path, client: Any, image: str | None = None) -> RuntimeUnderTest:
    from tests.docker_support import docker_tiny_args, ensure_cpu_image

    image = image or ensure_cpu_image()

    def containers(run_id: str) -> list[Any]:
        return list(client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"}))

    def kill(run_id: str) -> None:
        (container,) = containers(run_id)
        container.kill()

    return RuntimeUnderTest(
        "docker", lambda run: docker_tiny_args(image, model, run, hf), kill, containers
    )


def _local_personaplex(model: Path, hf: Path) -> RuntimeUnderTest:
    from tests.real_server import tiny_personaplex_bench_args

    local = _local(model, hf)
    args = ["--hf-cache", str(hf), "--port", "0", "--gpus", "none"]
    args += tiny_personaplex_bench_args(model)
    return RuntimeUnderTest(
        "local-personaplex",
        lambda run: ["--run-dir", str(run), *args],
        local.kill_server,
        local.left_behind,
    )


def _personaplex_in_image(model: Path, hf: Path) -> list[str]:
    """`bench` options for the tiny PersonaPlex server of a CPU image (Docker or SIF), the
    model mounted at its own path."""
    return [
        "--gpus", "none", "--profile", "personaplex",
        "--port", "0", "--hf-cache", str(hf), "--mount", f"{model}:{model}",
        "--server-command", f"python /opt/tiny_personaplex/serve.py --tiny-model {model}",
        f"--server-arg=--moshi-weight={model / 'model.safetensors'}",
    ]  # fmt: skip


def _docker_personaplex(model: Path, hf: Path, client: Any) -> RuntimeUnderTest:
    from tests.docker_support import PERSONAPLEX_CPU_IMAGE, ensure_cpu_image

    image = ensure_cpu_image(PERSONAPLEX_CPU_IMAGE, variant="personaplex")
    docker = _docker(model, hf, client, image)
    args = ["--runtime", "docker", "--image", image, *_personaplex_in_image(model, hf)]
    return RuntimeUnderTest(
        "docker-personaplex",
        lambda run: ["--run-dir", str(run), *args],
        docker.kill_server,
        docker.left_behind,
    )


def _apptainer_personaplex(model: Path, hf: Path) -> RuntimeUnderTest:
    """The CPU SIF's server driven from outside (`--runtime apptainer`): its processes are host
    processes (Apptainer makes no PID namespace), found by the run id like local ones."""
    from tests.apptainer_support import ensure_cpu_sif

    sif = ensure_cpu_sif("personaplex")
    local = _local(model, hf)
    args = ["--runtime", "apptainer", "--sif", str(sif), *_personaplex_in_image(model, hf)]
    return RuntimeUnderTest(
        "apptainer-personaplex",
        lambda run: ["--run-dir", str(run), *args],
        local.kill_server,
        local.left_behind,
    )


@pytest.fixture(
    params=[
        "local", "docker", "local-personaplex", "docker-personaplex",
        pytest.param("apptainer-personaplex", marks=pytest.mark.timeout(1200)),  # may build it
    ]
)  # fmt: skip
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeUnderTest]:
    hf = tmp_path / "hf"
    if request.param == "apptainer-personaplex":
        model = request.getfixturevalue("personaplex_model_dir").resolve()
        yield _apptainer_personaplex(model, hf)
        return
    if request.param == "local-personaplex":  # NVIDIA's server, its own profile
        model = request.getfixturevalue("personaplex_model_dir")
        yield _local_personaplex(model, hf)
        return
    if request.param == "docker-personaplex":
        import docker as docker_py

        from tests.docker_support import ensure_engine

        ensure_engine()
        model = request.getfixturevalue("personaplex_model_dir")
        pp_client = docker_py.from_env()
        try:
            yield _docker_personaplex(model, hf, pp_client)
        finally:
            pp_client.close()
        return
    model = request.getfixturevalue("tiny_model_dir").resolve()
    if request.param == "local":
        yield _local(model, hf)
        return
    import docker

    from tests.docker_support import ensure_engine

    ensure_engine()
    client = docker.from_env()
    try:
        yield _docker(model, hf, client)
    finally:
        client.close()


def bench(runtime: RuntimeUnderTest, run: Path, dataset: Path) -> subprocess.Popen[str]:
    return start(
        "bench",
        *runtime.args(run),
        "--root", str(dataset), "--overwrite", "--pace", "realtime",
        "--startup-timeout", "120", "--retry-backoff", "0.2",
    )  # fmt: skip


def test_server_killed_mid_sample_is_restarted_and_the_sample_retried(
    runtime: RuntimeUnderTest, dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    proc = bench(runtime, run, dataset)
    in_flight = wait_in_session(proc, run, finished=1)  # inside the second sample's session
    run_id = manifest(run)["run_id"]
    runtime.kill_server(run_id)
    code, out = finish(proc)
    assert code == 0, out
    recs = lines(run)
    assert [r["status"] for r in recs] == ["ok"] * 4
    # the path under test: exactly the sample in flight was retried, after its session broke
    retried = [i for i, r in enumerate(recs) if r["attempts"]]
    assert retried == [in_flight], out
    assert recs[in_flight]["attempts"][0]["error_kind"] in ("server_closed", "connect")
    assert manifest(run)["servers"][0]["restarts"] == 1
    assert "restarting it" in out
    assert runtime.left_behind(run_id) == []


def test_sigint_mid_run_tears_down_and_keeps_completed_samples(
    runtime: RuntimeUnderTest, dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "r"
    proc = bench(runtime, run, dataset)
    done = wait_in_session(proc, run, finished=1)
    run_id = manifest(run)["run_id"]
    assert runtime.left_behind(run_id)  # the server is up
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc, timeout=60)
    assert code == 130, out
    m = manifest(run)
    assert m["status"] == "interrupted" and m["counts"]["ok"] == done >= 1
    assert m["timings"]["stopping_s"] < 10
    assert runtime.left_behind(run_id) == []
    for r in lines(run):
        folder = Path(r["input"]).parent
        assert (folder / "output.wav").exists() and (folder / "output_text.json").exists()

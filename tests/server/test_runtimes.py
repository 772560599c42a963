"""Each runtime owns its pre-flight, its view of the machine, its backends and its cleanup; a
teardown that leaves something behind says so, with the command that removes it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pipeline import config
from pipeline.config import BenchSettings
from pipeline.server import cleanup as cleanup_module
from pipeline.server import local
from pipeline.server.apptainer_backend import ApptainerBackend, ApptainerRuntime
from pipeline.server.base import PreflightError, ServerSpec, TeardownError
from pipeline.server.docker_backend import DockerBackend, DockerRuntime
from pipeline.server.local import LocalProcessBackend, LocalRuntime
from pipeline.server.preflight import VoiceChoice, free_port
from pipeline.server.runtimes import RUNTIMES, runtime_named


def test_every_runtime_the_settings_accept_is_registered() -> None:
    assert set(RUNTIMES) == set(config.RUNTIMES)
    for name, runtime in RUNTIMES.items():
        assert runtime_named(name) is runtime and runtime.name == name
    with pytest.raises(PreflightError, match="runtime 'k8s' is unknown"):
        runtime_named("k8s")


def test_each_runtime_builds_its_own_backend_and_view(tmp_path: Path) -> None:
    voice = VoiceChoice("mine.wav", folder=tmp_path / "voices")
    spec = ServerSpec(["python", "-m", "moshi.server"], port=1234)
    settings = BenchSettings(sif=tmp_path / "x.sif", mounts=(f"{tmp_path}:/data",))
    local_view = LocalRuntime(settings).view(tmp_path / "hf", voice)
    assert (local_view.python, local_view.host) == (sys.executable, "127.0.0.1")
    assert local_view.voice_dir == str(tmp_path / "voices") and local_view.mounts == {}
    assert isinstance(LocalRuntime(settings).backend(spec, tmp_path), LocalProcessBackend)
    app = ApptainerRuntime(settings)
    app_view = app.view(tmp_path / "hf", voice)
    assert app_view.host == "127.0.0.1" and app_view.inner_port is None  # the host's network
    assert app_view.mounts[tmp_path / "voices"] == app_view.voice_dir == "/voices"
    assert app_view.mounts[tmp_path] == "/data"
    app.runtime_path = "/opt/apptainer/bin/apptainer"  # what its pre-flight would find
    backend = app.backend(spec, tmp_path)
    assert isinstance(backend, ApptainerBackend) and backend.image == tmp_path / "x.sif"
    for profile, host in (("moshi", "0.0.0.0"), ("personaplex", "127.0.0.1")):
        view = DockerRuntime(BenchSettings(profile=profile)).view(tmp_path / "hf", voice)
        assert view.host == host and view.inner_port == 8998 and view.python == "python"


class FakeContainer:
    def __init__(self, remove_error: Exception | None = None) -> None:
        self.remove_error = remove_error
        self.id, self.short_id, self.name = "c0ffee", "c0ffee", "x"
        self.attrs: dict[str, Any] = {"State": {"Running": False, "ExitCode": 0}}
        self.removed = False

    def stop(self, timeout: int) -> None:
        pass

    def reload(self) -> None:
        pass

    def logs(self, tail: Any = None) -> bytes:
        return b"server log line\n"

    def remove(self, force: bool) -> None:
        if self.remove_error is not None:
            raise self.remove_error
        self.removed = True


class FakeClient:
    """Knows no container by name."""

    class containers:
        @staticmethod
        def get(name: str) -> FakeContainer:
            raise docker.errors.NotFound(f"no container {name}")


def docker_backend(tmp_path: Path, container: FakeContainer) -> DockerBackend:
    spec = ServerSpec(["python"], port=free_port(), run_id="rid")
    backend = DockerBackend(spec, tmp_path, "img", client=FakeClient())
    backend.container = container
    return backend


def test_a_container_that_cannot_be_removed_is_reported_with_the_command(tmp_path: Path) -> None:
    backend = docker_backend(tmp_path, FakeContainer(docker.errors.APIError("device busy")))
    with pytest.raises(TeardownError) as info:
        backend.stop(1)
    assert f"docker rm -f {backend.spec.name}" in str(info.value)
    assert info.value.command == f"docker rm -f {backend.spec.name}"
    assert "device busy" in str(info.value)
    assert "server log line" in backend.log_path.read_text()  # the log is saved first


def test_a_container_already_gone_is_a_quiet_teardown(tmp_path: Path) -> None:
    container = FakeContainer(docker.errors.NotFound("no such container"))
    backend = docker_backend(tmp_path, container)
    backend.stop(1)  # no error
    assert backend.container is None
    backend.stop(1)  # twice is fine too (looked up by name: the fake client has none)


def test_a_process_group_that_survives_sigkill_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ServerSpec([sys.executable, "-c", "import time; time.sleep(30)"], port=free_port())
    backend = LocalProcessBackend(spec, tmp_path)
    backend.start()
    pid = backend.last_pid
    monkeypatch.setattr(local, "_live_members", lambda pgid: [pgid])  # as if unkillable
    monkeypatch.setattr(local.time, "sleep", lambda s: None)
    with pytest.raises(TeardownError) as info:
        backend.stop(grace_s=1)
    assert info.value.command == f"kill -9 -{pid}" and "still running" in str(info.value)
    assert backend.proc is None  # a second stop is a no-op


def test_cleanup_visits_each_kind_of_leftover_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def processes(cls: type, run_id: str | None) -> list[str]:
        calls.append(f"processes {run_id}")
        return ["process 1 (run r)"]

    def containers(cls: type, run_id: str | None) -> list[str]:
        calls.append(f"containers {run_id}")
        raise PreflightError("the Docker daemon is unreachable")

    monkeypatch.setattr(LocalRuntime, "remove_leftovers", classmethod(processes))
    monkeypatch.setattr(DockerRuntime, "remove_leftovers", classmethod(containers))
    caplog.set_level("INFO", logger="pipeline")
    assert cleanup_module.cleanup("r") == 0
    assert sorted(calls) == ["containers r", "processes r"]  # Apptainer's are local's
    assert "removed process 1 (run r)" in caplog.text
    assert "docker: not reachable" in caplog.text

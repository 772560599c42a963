"""The server in a Docker container, through docker-py.

The container runs on Docker's bridge network with its port published on 127.0.0.1 only; a GPU
is asked for with a device request; HF_TOKEN goes into the container's environment and nowhere
else; the Hugging Face cache is a mounted host folder. The container is not auto-removed: its
log is saved into the run dir first, then it is removed - a crashed server's log is never lost.
A container that cannot be removed is reported with the command that removes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pipeline.server.base import (
    LABEL_RUN,
    LABEL_TOOL,
    PreflightError,
    ServerBackend,
    ServerError,
    ServerSpec,
    TeardownError,
    log,
)
from pipeline.server.preflight import GpuFacts, VoiceChoice, gpu_facts
from pipeline.server.runtime import Runtime, ServerView, container_view
from pipeline.stream.protocol import DEFAULT_PORT

CONTAINER_PORT = DEFAULT_PORT  # the server's port inside the container
NETWORK_MODE = "bridge"  # Docker's default; the port is published on the host's loopback

NO_GPU_RUNTIME_HINT = (
    "Docker cannot give the container a GPU: install the NVIDIA Container Toolkit"
    " (nvidia-container-toolkit), run `sudo nvidia-ctk runtime configure --runtime=docker`"
    " and restart Docker; or use --runtime apptainer/local"
)


def no_gpu_runtime(docker_said: str) -> PreflightError:
    return PreflightError(f"{NO_GPU_RUNTIME_HINT} (Docker said: {docker_said})")


def image_missing(image: str) -> PreflightError:
    return PreflightError(
        f"Docker image {image} not found; build it with `make image` or pass --image NAME"
    )


def docker_client() -> Any:
    """A docker-py client, or a PreflightError that says how to get one."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise PreflightError(f"the docker Python package is missing: {exc}") from None
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except DockerException as exc:
        raise PreflightError(
            f"the Docker daemon is unreachable ({exc}); start it (`sudo systemctl start docker`),"
            " add yourself to the docker group, or set DOCKER_HOST"
        ) from None
    return client


class DockerBackend(ServerBackend):
    runtime = "docker"

    def __init__(
        self,
        spec: ServerSpec,
        log_dir: Path,
        image: str,
        client: Any | None = None,
    ) -> None:
        super().__init__(spec, log_dir)
        self.image = image
        self.client = client or docker_client()
        self.container: Any | None = None
        self.last_container_id: str | None = None
        self._exit_code: int | None = None

    def _run_kwargs(self) -> dict[str, Any]:
        from docker.types import DeviceRequest

        kwargs: dict[str, Any] = {
            "command": self.spec.command,
            "detach": True,
            "name": self.spec.name,
            "labels": self.spec.labels,
            "environment": dict(self.spec.env),
            "volumes": {str(h): {"bind": c, "mode": "rw"} for h, c in self.spec.mounts.items()},
            "stop_signal": "SIGTERM",
            # the host user's ids: the mounted HF cache stays writable and owned by the user
            "user": f"{os.getuid()}:{os.getgid()}",
        }
        kwargs["ports"] = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", self.spec.port)}
        if self.spec.gpu is not None:
            kwargs["device_requests"] = [
                DeviceRequest(device_ids=[self.spec.gpu], capabilities=[["gpu"]])
            ]
        return kwargs

    def start(self) -> None:
        from docker.errors import APIError, ImageNotFound

        self._exit_code = None
        with contextlib.suppress(Exception):  # a leftover of the same name (restart)
            self.client.containers.get(self.spec.name).remove(force=True)
        try:
            self.container = self.client.containers.run(self.image, **self._run_kwargs())
        except ImageNotFound:
            raise image_missing(self.image) from None
        except APIError as exc:
            text = str(exc)
            if "could not select device driver" in text:
                raise no_gpu_runtime(text) from None
            raise ServerError(f"Docker could not start {self.spec.name}: {text}") from None
        self.last_container_id = self.container.id
        log.info(
            "%s: container %s started from %s", self.spec.name, self.container.short_id, self.image
        )

    def exit_code(self) -> int | None:
        if self.container is None:
            return self._exit_code if self._exit_code is not None else -1
        try:
            self.container.reload()
        except Exception:  # removed behind our back
            return self._exit_code if self._exit_code is not None else -1
        state = self.container.attrs.get("State", {})
        if state.get("Running") or state.get("Status") in ("created", "restarting"):
            return None
        return int(state.get("ExitCode", -1))

    def logs(self, tail: int | None = None) -> str:
        if self.container is None:
            try:
                return self.log_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
        try:
            raw = self.container.logs(tail=tail if tail else "all")
        except Exception as exc:
            return f"(logs unavailable: {exc})"
        return bytes(raw).decode("utf-8", errors="replace")

    def save_logs(self) -> None:
        if self.container is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(f"=== {self.spec.name} ({self.container.short_id}) ===\n")
            fh.write(self.logs())

    def stop(self, grace_s: float = 10.0) -> None:
        from docker.errors import DockerException, NotFound

        container = self.container
        if container is None:
            # start may have failed (or been interrupted) between create and start: the
            # container can exist without us holding it - find it by its name
            self._remove(lambda: self.client.containers.get(self.spec.name))
            return
        try:
            container.stop(timeout=int(max(1, grace_s)))  # SIGTERM, SIGKILL after the grace
        except NotFound:
            pass  # gone already
        except DockerException as exc:  # the forced removal below still kills it
            log.warning("%s: docker stop failed (%s); removing it by force", self.spec.name, exc)
        self._exit_code = self.exit_code()
        self.save_logs()
        self.container = None
        self._remove(lambda: container)

    def _remove(self, find: Any) -> None:
        """Force-remove the container; "already gone" is fine, anything else is reported."""
        from docker.errors import DockerException, NotFound

        try:
            find().remove(force=True)
        except NotFound:
            return
        except DockerException as exc:
            raise TeardownError(
                f"container {self.spec.name} could not be removed ({exc})",
                f"docker rm -f {self.spec.name}",
            ) from None

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["image"] = self.image
        with contextlib.suppress(Exception):
            doc["image_id"] = self.client.images.get(self.image).id
        doc["container"] = self.last_container_id
        doc["network_mode"] = NETWORK_MODE
        return doc


def _gpu_probe(client: Any, image: str, gpu: str) -> None:
    """Start a throw-away container with the GPU request: the exact error a run would hit."""
    from docker.errors import APIError
    from docker.types import DeviceRequest

    container = None
    try:
        container = client.containers.create(
            image,
            ["true"],
            device_requests=[DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])],
        )
        container.start()
    except APIError as exc:
        if "could not select device driver" in str(exc) or "nvidia" in str(exc).lower():
            raise no_gpu_runtime(str(exc)) from None
    finally:
        if container is not None:
            container.remove(force=True)


class DockerRuntime(Runtime):
    """Servers in containers of ``--image``, one per device, through the Docker daemon."""

    name = "docker"
    client: Any = None

    def preflight(self, first_gpu: str | None) -> GpuFacts | None:
        from docker.errors import ImageNotFound

        image = self.settings.image
        self.client = docker_client()
        try:
            self.client.images.get(image)
        except ImageNotFound:
            raise image_missing(image) from None
        if first_gpu is None:
            return None
        _gpu_probe(self.client, image, first_gpu)
        return gpu_facts()  # the host's nvidia-smi, where the driver put one

    def view(self, hf_cache: Path, voice: VoiceChoice) -> ServerView:
        # the published port reaches the container's own interface: upstream moshi, which
        # really binds --host, must bind every interface; PersonaPlex binds all of them anyway
        host = "0.0.0.0" if self.settings.profile == "moshi" else "127.0.0.1"
        return container_view(self.settings, hf_cache, voice, host, CONTAINER_PORT)

    def backend(self, spec: ServerSpec, log_dir: Path) -> ServerBackend:
        return DockerBackend(spec, log_dir, self.settings.image, client=self.client)

    @classmethod
    def remove_leftovers(cls, run_id: str | None) -> list[str]:
        """Remove this tool's containers (of one run, or all); return what was removed."""
        client = docker_client()
        label = LABEL_TOOL if run_id is None else f"{LABEL_RUN}={run_id}"
        removed = []
        for c in client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                c.remove(force=True)
                removed.append(f"container {c.name}")
        return removed

"""The server in a Docker container, through docker-py.

The port is published on 127.0.0.1 only; a GPU is asked for with a device request; HF_TOKEN goes
into the container's environment and nowhere else; the Hugging Face cache is a mounted host
folder. The container is not auto-removed: its log is saved into the run dir first, then it is
removed - a crashed server's log is never lost.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pipeline.server.base import (
    LABEL_TOOL,
    SERVER_PORT,
    PreflightError,
    ServerBackend,
    ServerError,
    ServerSpec,
    log,
)

NO_GPU_RUNTIME_HINT = (
    "Docker cannot give the container a GPU: install the NVIDIA Container Toolkit"
    " (nvidia-container-toolkit), run `sudo nvidia-ctk runtime configure --runtime=docker`"
    " and restart Docker; or use --runtime apptainer/local"
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
        network_mode: str | None = None,
    ) -> None:
        super().__init__(spec, log_dir)
        self.image = image
        self.client = client or docker_client()
        self.network_mode = network_mode  # "host": the server binds spec.port on the host itself
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
        if self.network_mode == "host":
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {f"{SERVER_PORT}/tcp": ("127.0.0.1", self.spec.port)}
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
            raise PreflightError(
                f"image {self.image} not found; build it with `make image` or pass --image"
            ) from None
        except APIError as exc:
            text = str(exc)
            if "could not select device driver" in text:
                raise PreflightError(f"{NO_GPU_RUNTIME_HINT} (Docker said: {text})") from None
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
        container = self.container
        if container is None:
            # start may have failed (or been interrupted) between create and start: the
            # container can exist without us holding it - find it by its name
            with contextlib.suppress(Exception):
                self.client.containers.get(self.spec.name).remove(force=True)
            return
        with contextlib.suppress(Exception):
            container.stop(timeout=int(max(1, grace_s)))  # SIGTERM, SIGKILL after the grace
        self._exit_code = self.exit_code()
        self.save_logs()
        with contextlib.suppress(Exception):
            container.remove(force=True)
        self.container = None

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["image"] = self.image
        with contextlib.suppress(Exception):
            doc["image_id"] = self.client.images.get(self.image).id
        doc["container"] = self.last_container_id
        doc["network_mode"] = self.network_mode or "bridge"
        return doc


def remove_leftovers(run_id: str | None = None) -> list[str]:
    """Remove this tool's containers (of one run, or all); return their names."""
    client = docker_client()
    label = LABEL_TOOL if run_id is None else f"fdb-pipeline.run-id={run_id}"
    removed = []
    for c in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(Exception):
            c.remove(force=True)
            removed.append(str(c.name))
    return removed

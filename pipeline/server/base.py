"""What every server backend (Docker, Apptainer, local process) offers: start, alive, logs, stop.

A backend is a context manager: leaving the block always stops the server and removes what it
made, whatever the reason (success, error, signal).
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.secrets import public_env, redact
from pipeline.stream.protocol import CHAT_PATH

log = logging.getLogger("pipeline")

RUN_ID_ENV = "FDB_PIPELINE_RUN_ID"  # in every server's environment: `cleanup` finds them by it
LABEL_RUN = "fdb-pipeline.run-id"
LABEL_TOOL = "fdb-pipeline"
NAME_PREFIX = "fdb-pipeline"


class ServerError(RuntimeError):
    """The server could not be started, or died; carries the tail of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.message = message
        self.log_tail = log_tail
        text = message
        if log_tail.strip():
            text += "\n--- last lines of the server log ---\n" + log_tail.rstrip()
        super().__init__(redact(text))


class ServerExited(ServerError):
    """The server process/container exited (during start-up or later)."""


class ServerTimeout(ServerError):
    """The server did not become ready in time."""


class TeardownError(ServerError):
    """Stopping a server failed: something is left running. Names the command that removes it."""

    def __init__(self, message: str, command: str) -> None:
        self.command = command
        super().__init__(f"{message}; remove it with `{command}`")


class PreflightError(RuntimeError):
    """Something needed is missing; the message says how to fix it."""


@dataclass
class ServerSpec:
    """How to run one server: its command line (server flags only), environment and mounts."""

    command: list[str]  # e.g. ["python", "-m", "moshi.server", "--host", ...]
    port: int  # on the host (127.0.0.1)
    gpu: str | None = None  # a device index ("0"), or None for CPU
    env: dict[str, str] = field(default_factory=dict)  # may hold HF_TOKEN: never logged
    mounts: dict[Path, str] = field(default_factory=dict)  # host path -> path inside
    run_id: str = "adhoc"
    index: int = 0

    @property
    def name(self) -> str:
        return f"{NAME_PREFIX}-{self.run_id}-{self.index}"

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_TOOL: "1", LABEL_RUN: self.run_id, f"{LABEL_TOOL}.index": str(self.index)}

    def public_env(self) -> dict[str, str]:
        """The environment as it may be shown: secrets masked."""
        return public_env(self.env)


class ServerBackend(abc.ABC):
    """One server instance."""

    runtime = "abstract"

    def __init__(self, spec: ServerSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_dir = log_dir
        self.log_path = log_dir / f"server-{spec.index}.log"
        self.restarts = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{CHAT_PATH}"

    @abc.abstractmethod
    def start(self) -> None:
        """Launch the server (returns at once; readiness is checked separately)."""

    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """None while running; the exit code once it has stopped."""

    def alive(self) -> bool:
        return self.exit_code() is None

    def listener_is_ours(self) -> bool:
        """Whether what listens on our port is this server (not another job's on a shared
        node). Docker publishes the port for its container alone: always ours."""
        return True

    @abc.abstractmethod
    def logs(self, tail: int | None = None) -> str:
        """The server's output so far (last ``tail`` lines)."""

    @abc.abstractmethod
    def stop(self, grace_s: float = 10.0) -> None:
        """Stop gracefully, kill after ``grace_s``, save the log, remove what was created.
        Must be safe to call twice and on a server that already died. Raises TeardownError
        when something is left behind."""

    def describe(self) -> dict[str, Any]:
        """Provenance for the manifest (no secrets)."""
        return {
            "runtime": self.runtime,
            "name": self.spec.name,
            "command": [redact(a) for a in self.spec.command],
            "port": self.port,
            "gpu": self.spec.gpu,
            "device": "cpu" if self.spec.gpu is None else f"gpu {self.spec.gpu}",
            "env": self.spec.public_env(),
            "log": str(self.log_path),
            "restarts": self.restarts,
        }

    def restart(self, grace_s: float = 10.0) -> None:
        self.stop(grace_s)
        self.restarts += 1
        self.start()

    def __enter__(self) -> ServerBackend:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

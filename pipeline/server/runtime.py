"""What every runtime (`--runtime docker|apptainer|local`) offers: its pre-flight checks, how its
server sees this machine, its backends, and the cleanup of what a crashed run left behind."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pipeline.config import BenchSettings
from pipeline.server.base import ServerBackend, ServerSpec
from pipeline.server.preflight import GpuFacts, VoiceChoice


@dataclass(frozen=True)
class ServerView:
    """This machine as the server sees it: where its Python, cache and voices are, which address
    it binds, and its port inside a container (None: the host port itself)."""

    python: str
    hf_home: str
    host: str
    mounts: dict[Path, str] = field(default_factory=dict)  # host path -> path inside
    voice_dir: str | None = None
    inner_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # what the runtime adds to the server's


class Runtime(abc.ABC):
    """One way to run servers (`--runtime NAME`); chosen by name from `runtimes.RUNTIMES`."""

    name: ClassVar[str]

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def preflight(self, first_gpu: str | None) -> GpuFacts | None:
        """Everything this runtime needs, checked before any server starts (PreflightError
        names the fix); the GPU facts where a GPU is asked for."""

    @abc.abstractmethod
    def view(self, hf_cache: Path, voice: VoiceChoice) -> ServerView:
        """Paths and addresses as the server will see them."""

    @abc.abstractmethod
    def backend(self, spec: ServerSpec, log_dir: Path) -> ServerBackend:
        """One server of this runtime (not started)."""

    @classmethod
    @abc.abstractmethod
    def remove_leftovers(cls, run_id: str | None) -> list[str]:
        """Remove what crashed runs (one, or all) left behind; describe each thing removed.
        PreflightError when this runtime cannot be checked here."""


BIND_GUARD_DIR = Path(__file__).resolve().parent / "bind_guard"  # holds a sitecustomize.py
BIND_GUARD_MOUNT = "/opt/fdb-pipeline/bind_guard"
LOOPBACK = "127.0.0.1"


def loopback_env(guard_dir: str, pythonpath: str | None) -> dict[str, str]:
    """The server shares the host's network: whatever it asks for, it listens on loopback only
    (see bind_guard/sitecustomize.py)."""
    path = guard_dir if not pythonpath else f"{guard_dir}{os.pathsep}{pythonpath}"
    return {"FDB_PIPELINE_BIND": LOOPBACK, "PYTHONPATH": path}


CONTAINER_HF_HOME = "/cache/huggingface"
VOICE_MOUNT = "/voices"  # a custom voice's folder, inside a container


def container_view(
    settings: BenchSettings,
    hf_cache: Path,
    voice: VoiceChoice,
    host: str,
    inner_port: int | None = None,
) -> ServerView:
    """A server in an image: the image's Python, the cache, --mount folders and a custom voice's
    folder mounted in."""
    mounts: dict[Path, str] = {hf_cache: CONTAINER_HF_HOME}
    for mount in settings.mounts:
        host_dir, _, inside = mount.partition(":")
        mounts[Path(host_dir).expanduser().resolve()] = inside
    voice_dir = None
    if voice.folder is not None:
        mounts[voice.folder] = VOICE_MOUNT
        voice_dir = VOICE_MOUNT
    return ServerView("python", CONTAINER_HF_HOME, host, mounts, voice_dir, inner_port)

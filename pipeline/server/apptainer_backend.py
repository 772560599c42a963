"""The server in an Apptainer (or SingularityCE) image, for HPC nodes.

The server runs as a foreground child (``apptainer exec --nv IMAGE ...``) in its own process
group, not as an ``instance``: under Slurm an instance outlives the job, a child dies with it.
Secrets travel in the child's environment (Apptainer passes it through), never on its command
line. spython reads the image's labels and the runtime's version for the manifest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.digest import file_sha256
from pipeline.server.base import PreflightError, ServerBackend, ServerSpec
from pipeline.server.local import LocalProcessBackend, LocalRuntime
from pipeline.server.preflight import GpuFacts, VoiceChoice, require_nvidia_smi
from pipeline.server.runtime import (
    BIND_GUARD_DIR,
    BIND_GUARD_MOUNT,
    LOOPBACK,
    ServerView,
    container_view,
    loopback_env,
)

RUNTIME_NAMES = ("apptainer", "singularity")


def find_runtime() -> str:
    """Path of ``apptainer`` or ``singularity``, whichever the cluster has."""
    for name in RUNTIME_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise PreflightError(
        "neither apptainer nor singularity is on PATH; load it (e.g. `module load apptainer`)"
        " or install Apptainer, or use --runtime docker/local"
    )


@contextlib.contextmanager
def _spython_path(runtime: str) -> Iterator[None]:
    """spython always calls `singularity`: give it one that points at the runtime we found."""
    if Path(runtime).name == "singularity":
        yield
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(runtime, Path(tmp) / "singularity")
        old = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{tmp}{os.pathsep}{old}"
        try:
            yield
        finally:
            os.environ["PATH"] = old


def image_facts(runtime: str, image: Path) -> dict[str, Any]:
    """Labels of the image and the runtime's version, via spython (best effort)."""
    facts: dict[str, Any] = {"runtime_path": runtime}
    try:
        from spython.main import Client

        with _spython_path(runtime):
            version = Client.version()
            inspected = Client.inspect(str(image), quiet=True)
        if isinstance(version, dict):  # spython reports a failed call as a dict
            facts["inspect_error"] = str(version.get("message"))
        else:
            facts["runtime_version"] = str(version).strip()
        if isinstance(inspected, dict):  # spython unwraps Apptainer's {"data": ...} itself
            doc = inspected.get("data", inspected)
            facts["labels"] = doc.get("attributes", doc).get("labels")
    except Exception as exc:  # provenance only: never fail a run on it
        facts["inspect_error"] = str(exc)
    return facts


class ApptainerBackend(LocalProcessBackend):
    runtime = "apptainer"

    def __init__(self, spec: ServerSpec, log_dir: Path, image: Path, runtime: str | None = None):
        super().__init__(spec, log_dir)
        self.image = image
        self.runtime_path = runtime or find_runtime()
        self._image_sha256: str | None = None

    def argv(self) -> list[str]:
        argv = [self.runtime_path, "exec"]
        if self.spec.gpu is not None:
            argv.append("--nv")
        for host, inside in self.spec.mounts.items():
            argv += ["--bind", f"{host}:{inside}"]
        return [*argv, str(self.image), *self.spec.command]

    def child_env(self) -> dict[str, str]:
        """Our settings also as APPTAINERENV_NAME (SINGULARITYENV_ for SingularityCE): the
        runtime applies those after the image's %environment, which drops the host's
        PYTHONPATH (the bind guard travels in it) and could set anything else of ours."""
        env = super().child_env()
        prefix = (
            "SINGULARITYENV_"
            if Path(self.runtime_path).name == "singularity"
            else ("APPTAINERENV_")
        )
        env.update({prefix + name: value for name, value in self.spec.env.items()})
        return env

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["command"] = self.argv()
        doc["image"] = str(self.image)
        if self._image_sha256 is None:
            with contextlib.suppress(OSError):
                self._image_sha256 = file_sha256(self.image)  # once: an image is GBs
        doc["image_sha256"] = self._image_sha256
        doc.update(image_facts(self.runtime_path, self.image))
        return doc


class ApptainerRuntime(LocalRuntime):
    """The server image run by `apptainer exec` as a child process (its leftovers are processes,
    found and removed as the local runtime's are). Apptainer shares the host's network, so the
    server binds loopback."""

    name = "apptainer"
    runtime_path: str | None = None

    def preflight(self, first_gpu: str | None) -> GpuFacts | None:
        self.runtime_path = find_runtime()
        sif = self.settings.sif
        if sif is None or not sif.is_file():
            raise PreflightError(f"Apptainer image {sif} not found; build it: make sif")
        return require_nvidia_smi(self.name) if first_gpu is not None else None

    def view(self, hf_cache: Path, voice: VoiceChoice) -> ServerView:
        view = container_view(self.settings, hf_cache, voice, LOOPBACK)
        # the image's own packages only: the host's PYTHONPATH is replaced, not extended
        view.mounts[BIND_GUARD_DIR] = BIND_GUARD_MOUNT
        view.env.update(loopback_env(BIND_GUARD_MOUNT, None))
        return view

    def backend(self, spec: ServerSpec, log_dir: Path) -> ServerBackend:
        assert self.settings.sif is not None  # checked by preflight
        return ApptainerBackend(spec, log_dir, self.settings.sif, self.runtime_path)

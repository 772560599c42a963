"""The client's side of the ASR worker (:mod:`pipeline.evaluate.asr_worker`, run by the Python
of ``.venv-asr``): where that Python is, what the model is, and one worker process per run
(the model loaded once) spoken to in JSON lines over its stdin and stdout."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.digest import file_sha256
from pipeline.evaluate.asr_worker import PINNED_FILE, PINNED_MODEL, PINNED_REVISION

WORKER = Path(__file__).with_name("asr_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = "FDB_ASR_PYTHON"
VENV_FIX = "make asr-env (scripts/setup-asr-env.sh), or --asr-python / $FDB_ASR_PYTHON"
STDERR_TAIL = 2000


class AsrError(RuntimeError):
    """The ASR worker could not start or answer; the message says why and what to do."""


def default_python() -> Path:
    """``$FDB_ASR_PYTHON``, else ``.venv-asr/bin/python`` of this checkout."""
    return Path(os.environ.get(PYTHON_ENV) or REPO_ROOT / ".venv-asr" / "bin" / "python")


def hub_cache() -> Path:
    """The Hugging Face hub cache, found as ``huggingface_hub`` finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "huggingface" / "hub"


def cached_pinned_model() -> Path | None:
    """The pinned model's file in the hub cache, if it was downloaded at the pinned revision."""
    repo = "models--" + PINNED_MODEL.replace("/", "--")
    path = hub_cache() / repo / "snapshots" / PINNED_REVISION / PINNED_FILE
    return path if path.is_file() else None


def asr_requirement(python: Path, model: str, explicit: bool) -> str | None:
    """What the asr stage lacks here (None: it can start). The pinned model must be in the hub
    cache unless the stage was asked for (``explicit``): then the worker downloads it."""
    if not (python.is_file() and os.access(python, os.X_OK)):
        return f"the ASR venv's Python {python}, which is not there ({VENV_FIX})"
    if model.endswith(".nemo"):
        if not Path(model).is_file():
            return f"--asr-model {model}, which is not there (a .nemo file)"
    elif model != PINNED_MODEL:
        return f"--asr-model PATH.nemo or {PINNED_MODEL}, not {model!r}"
    elif not explicit and cached_pinned_model() is None:
        return (
            f"{PINNED_MODEL} (revision {PINNED_REVISION[:12]}) in the Hugging Face cache"
            f" {hub_cache()}: --stage asr downloads it, or pass --asr-model PATH.nemo"
        )
    return None


@functools.cache
def _nemo_sha256(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def model_identity(model: str) -> dict[str, str]:
    """What a transcript was made with (in its stamp): a file's sha256, or repo + revision."""
    if model.endswith(".nemo"):
        path = Path(model).resolve()
        info = path.stat()
        return {"nemo_sha256": _nemo_sha256(path, info.st_size, info.st_mtime_ns)}
    return {"repo": model, "revision": PINNED_REVISION}


@dataclass(frozen=True)
class AsrJob:
    wav: Path
    crop_after_s: float | None = None  # FDB's interruption crop: only what follows is heard


class AsrWorker:
    """One worker process; :meth:`transcribe` may be called many times, then :meth:`close`."""

    def __init__(self, python: Path, model: str) -> None:
        # the worker's stderr (NeMo's logging), shown when it fails; closed by close()
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="fdb-asr-worker-")  # noqa: SIM115
        cmd = [str(python), str(WORKER), "--model", model, "--revision", PINNED_REVISION]
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
            )
        except OSError as exc:
            raise AsrError(f"cannot run the ASR worker with {python}: {exc}; {VENV_FIX}") from exc
        hello = self._reply("start")
        if not hello.get("ready"):
            self.close()
            raise AsrError(f"the ASR worker did not start: {hello.get('error')}")
        self.device = str(hello.get("device"))
        self.versions: dict[str, str] = dict(hello.get("versions", {}))

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-STDERR_TAIL:].strip()

    def _reply(self, what: str) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise AsrError(f"the ASR worker exited ({code}) at {what}: {self._stderr_tail()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def transcribe(self, jobs: list[AsrJob]) -> list[dict[str, Any]]:
        """FDB's word document of each job's wav, in order."""
        request = {"jobs": [{"wav": str(j.wav), "crop_after_s": j.crop_after_s} for j in jobs]}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            raise AsrError(f"the ASR worker is gone: {self._stderr_tail()}") from exc
        reply = self._reply(", ".join(j.wav.name for j in jobs))
        if "error" in reply:
            raise AsrError(f"ASR of {jobs[0].wav.parent}: {reply['error']}")
        results: list[dict[str, Any]] = reply["results"]
        return results

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # the worker ends at the end of its input
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()

"""The run's records in ``--run-dir``: ``manifest.json`` (provenance, settings, status, counts) and
``samples.jsonl`` (one line per sample). Both survive a crash: the manifest is rewritten
atomically at start and end, and each sample line is flushed to disk as soon as it is known.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from pipeline.results.atomic import atomic_write_bytes

SECRET_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
PACKAGES = ("fdb-pipeline", "websockets", "opuslib", "soundfile", "soxr", "numpy", "tenacity")


def new_run_id() -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def redact(text: str) -> str:
    """Remove anything that looks like a Hugging Face token."""
    return SECRET_PATTERN.sub("hf_***", text)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact(value)
    return value


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import soundfile

        versions["libsndfile"] = str(soundfile.__libsndfile_version__)
    except (ImportError, AttributeError):
        versions["libsndfile"] = None
    try:
        import opuslib.api.info

        raw = opuslib.api.info.get_version_string()
        versions["libopus"] = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:  # the library is optional for the record, never for the run
        versions["libopus"] = None
    return versions


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the checkout this package runs from (None outside git)."""
    here = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(here), *args],
                check=False,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def atomic_write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


class RunRecords:
    """Owns manifest.json and samples.jsonl of one run."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        self.manifest_path = run_dir / "manifest.json"
        self.samples_path = run_dir / "samples.jsonl"
        self.manifest: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self._lines: TextIO | None = None

    def start(self, settings: Any, extra: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = {
            "run_id": self.run_id,
            "tool": "fdb-pipeline",
            "status": "started",
            "started_at": now_iso(),
            "finished_at": None,
            "command": [redact(a) for a in sys.argv],
            "settings": settings,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": package_versions(),
            "git": git_state(),
            "counts": {"ok": 0, "failed": 0, "skipped": 0},
            **extra,
        }
        atomic_write_json(self.manifest_path, self.manifest)
        self._lines = self.samples_path.open("a", encoding="utf-8")

    def add_sample(self, record: dict[str, Any]) -> None:
        self.counts[str(record["status"])] += 1
        if self._lines is None:
            raise RuntimeError("RunRecords.start() must come first")
        self._lines.write(json.dumps(to_jsonable(record), ensure_ascii=False) + "\n")
        self._lines.flush()
        os.fsync(self._lines.fileno())

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        atomic_write_json(self.manifest_path, self.manifest)

    def finish(self, status: str, **fields: Any) -> None:
        self.manifest.update(fields)
        self.manifest["status"] = status
        self.manifest["finished_at"] = now_iso()
        self.manifest["counts"] = {k: self.counts.get(k, 0) for k in ("ok", "failed", "skipped")}
        atomic_write_json(self.manifest_path, self.manifest)
        if self._lines is not None:
            self._lines.close()
            self._lines = None

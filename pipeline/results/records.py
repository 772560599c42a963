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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from pipeline.dataset.discovery import Sample
from pipeline.results.atomic import atomic_write_bytes
from pipeline.secrets import redact
from pipeline.stream.session import SessionErrorKind

# ok: written by this run; skipped: complete from an earlier run; failed: tried, not written;
# not_run: never tried (the run stopped first: a breaker, a profile mismatch, no server left);
# held: another live run holds the sample's lock. Only ok and skipped are complete.
SampleStatus = Literal["ok", "failed", "skipped", "not_run", "held"]
SAMPLE_STATUSES: tuple[SampleStatus, ...] = get_args(SampleStatus)
INCOMPLETE: tuple[SampleStatus, ...] = ("failed", "not_run", "held")
# Notes beside a status: redone (ok) because its old outputs were made with other settings;
# kept (skipped) although made with other settings, as --keep-other-settings asks
Note = Literal["redone: settings changed", "kept: other settings"]
NOTES: tuple[Note, ...] = get_args(Note)
# Why a sample failed: a session's own kinds, a bad input, outputs that could not be written; or
# why it was not run: the run stopped before it (a breaker, a profile mismatch, no server left)
ErrorKind = SessionErrorKind | Literal["input", "write", "stopped"]
RunStatus = Literal["started", "finished", "failed", "interrupted"]


@dataclass
class Attempt:
    """One failed try of a sample that was retried."""

    stage: Literal["connect", "session"]
    attempt: int
    error_kind: SessionErrorKind
    error: str


@dataclass
class SampleRecord:
    """One line of ``samples.jsonl``: what became of one sample. Failed until proven otherwise."""

    task: str
    id: str
    input: str
    prefix: str = ""
    status: SampleStatus = "failed"
    note: Note | None = None
    run_id: str | None = None  # set by RunRecords.add_sample: a reused run dir mixes runs
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float | None = None
    frames_sent: int = 0
    frames_received: int = 0
    frames_expected: int | None = None
    wall_s: float | None = None
    lag: dict[str, float] | None = None
    session_index: int | None = None  # sessions its server had served us before this one
    server: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    handshake_s: float | None = None
    stream_s: float | None = None
    realtime_factor: float | None = None

    @classmethod
    def of(cls, sample: Sample, server: str | None = None) -> SampleRecord:
        return cls(
            task=sample.task,
            id=sample.sample_id,
            input=str(sample.input_path),
            prefix=sample.prefix,
            server=server,
        )

    @property
    def key(self) -> str:
        base = f"{self.task}/{self.id}"
        return f"{base} ({self.prefix})" if self.prefix else base

    def fail(self, kind: ErrorKind, error: str) -> SampleRecord:
        self.status, self.error_kind, self.error = "failed", kind, error
        return self

    def not_run(self, why: str) -> SampleRecord:
        self.status, self.error_kind, self.error = "not_run", "stopped", why
        return self


PACKAGES = ("fdb-pipeline", "websockets", "opuslib", "soundfile", "soxr", "numpy", "tenacity")


def new_run_id() -> str:
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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
    """Owns manifest.json and samples.jsonl of one run, and the tally of sample outcomes."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        self.manifest_path = run_dir / "manifest.json"
        self.samples_path = run_dir / "samples.jsonl"
        self.manifest: dict[str, Any] = {}
        self.counts: Counter[SampleStatus] = Counter()
        self.notes: Counter[Note] = Counter()
        self.failures: list[SampleRecord] = []
        self._lines: TextIO | None = None

    @property
    def started(self) -> bool:
        return self.manifest.get("status") == "started"

    def start(self, settings: Any, extra: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._keep_earlier_manifest()
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
            "counts": self.count_table(),
            **extra,
        }
        atomic_write_json(self.manifest_path, self.manifest)
        self._lines = self.samples_path.open("a", encoding="utf-8")

    def add_sample(self, record: SampleRecord) -> None:
        """The one writer of ``samples.jsonl``: the line is on disk when this returns."""
        if self._lines is None:
            raise RuntimeError("RunRecords.start() must come first")
        record.run_id = self.run_id
        self.counts[record.status] += 1
        if record.note is not None:
            self.notes[record.note] += 1
        if record.status in ("failed", "not_run"):
            self.failures.append(record)
        self._lines.write(json.dumps(to_jsonable(record), ensure_ascii=False) + "\n")
        self._lines.flush()
        os.fsync(self._lines.fileno())

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        atomic_write_json(self.manifest_path, self.manifest)

    def finish(self, status: RunStatus, **fields: Any) -> None:
        self.manifest.update(fields)
        self.manifest["status"] = status
        self.manifest["finished_at"] = now_iso()
        self.manifest["counts"] = self.count_table()
        atomic_write_json(self.manifest_path, self.manifest)
        if self._lines is not None:
            self._lines.close()
            self._lines = None

    def _keep_earlier_manifest(self) -> None:
        """A reused run dir keeps every run's manifest: the earlier one is renamed after its
        run id (samples.jsonl is appended to, each line naming its run)."""
        try:
            earlier = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        run_id = earlier.get("run_id") if isinstance(earlier, dict) else None
        safe = isinstance(run_id, str) and re.fullmatch(r"[\w.-]+", run_id) is not None
        name = f"manifest.{run_id}.json" if safe else "manifest.earlier.json"
        self.manifest_path.replace(self.run_dir / name)

    def count_table(self) -> dict[str, int]:
        """Samples per status, then the notes (a subset of ok / skipped)."""
        table: dict[str, int] = {k: self.counts.get(k, 0) for k in SAMPLE_STATUSES}
        table.update({k: self.notes.get(k, 0) for k in NOTES})
        return table

    @property
    def incomplete(self) -> int:
        return sum(self.counts.get(k, 0) for k in INCOMPLETE)

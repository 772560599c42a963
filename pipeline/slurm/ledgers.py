"""The ledgers of a job's tasks (each task's run folder: manifest.json + samples.jsonl), read
while the tasks may still be writing them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.run.selection import read_keys
from pipeline.slurm.jobdir import JobDir, Submission

DONE = ("ok", "skipped")  # a record with one of these statuses: the sample is complete


@dataclass
class TaskLedger:
    """One array task's folder: its manifest (the latest run's) and its sample records."""

    array: int
    task: int
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def planned(self) -> int | None:
        """How many samples the latest run of this task took on (None: not started)."""
        dataset = self.manifest.get("dataset")
        count = dataset.get("samples") if isinstance(dataset, dict) else None
        return count if isinstance(count, int) else None

    def latest_records(self) -> list[dict[str, Any]]:
        """The records of the latest run in this folder (a requeued task is a new run)."""
        run_id = self.manifest.get("run_id")
        return [r for r in self.records if r.get("run_id") == run_id]


def read_records(path: Path) -> list[dict[str, Any]]:
    """samples.jsonl's records; a last line still being written (no newline yet) is left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is empty or still being written
    records = []
    for line in complete:
        if line.strip():
            doc = json.loads(line)
            if isinstance(doc, dict):
                records.append(doc)
    return records


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def task_ledger(job: JobDir, array: int, task: int) -> TaskLedger:
    path = job.task_dir(array, task)
    return TaskLedger(
        array,
        task,
        path,
        read_manifest(path / "manifest.json"),
        read_records(path / "samples.jsonl"),
    )


def all_ledgers(job: JobDir, submissions: list[Submission]) -> list[TaskLedger]:
    """Every task's ledger, array by array, task by task (later ones hold the later word)."""
    return [task_ledger(job, s.index, k) for s in submissions for k in range(s.shards)]


def expected_keys(job: JobDir) -> list[str]:
    """The job's samples: those of its first array, in dataset order."""
    return read_keys(job.samples(0))

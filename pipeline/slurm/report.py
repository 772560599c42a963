"""`slurm report`: every task's ledger merged into one summary and one manifest for the job.

Each of the job's samples (its first array's list) is counted exactly once: by the last record
of it in the job's ledgers (arrays in order, a file's lines in order): ok (written or found
complete), failed (failed, not run, held by another run), or missing (no record: its task never
ran, was killed before it, or has not reached it yet).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.results.atomic import atomic_write_bytes
from pipeline.results.records import atomic_write_json, now_iso
from pipeline.slurm.jobdir import JobDir, Submission
from pipeline.slurm.ledgers import DONE, TaskLedger, all_ledgers, expected_keys

Final = Literal["ok", "failed", "missing"]
FINALS: tuple[Final, ...] = ("ok", "failed", "missing")


def record_key(record: dict[str, Any]) -> str:
    base = f"{record.get('task')}/{record.get('id')}"
    return f"{base} ({record['prefix']})" if record.get("prefix") else base


@dataclass
class Merged:
    """The job's samples, each with its final state and the record that decided it."""

    samples: dict[str, tuple[Final, dict[str, Any] | None, str | None]]
    # samples written (ok) by more than one record: the same work done twice
    done_twice: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # ledger keys that are not the job's

    def counts(self) -> dict[str, int]:
        tally = Counter(state for state, _, _ in self.samples.values())
        return {state: tally.get(state, 0) for state in FINALS}

    def by_group(self) -> dict[str, dict[str, int]]:
        """Counts per task folder and pass: ``user_backchannel``, ``user_backchannel (clean_)``."""
        groups: dict[str, Counter[str]] = defaultdict(Counter)
        for key, (state, _, _) in self.samples.items():
            task = key.split("/", 1)[0]
            prefix = key.rsplit(" (", 1)[1].rstrip(")") if key.endswith(")") else ""
            groups[f"{task} ({prefix})" if prefix else task][state] += 1
        return {g: {s: c.get(s, 0) for s in FINALS} for g, c in sorted(groups.items())}

    @property
    def complete(self) -> bool:
        return all(state == "ok" for state, _, _ in self.samples.values())

    def unfinished(self) -> list[str]:
        """Failed and missing samples, in the job's order: what a resubmit runs."""
        return [k for k, (state, _, _) in self.samples.items() if state != "ok"]


def final_of(record: dict[str, Any]) -> Final:
    return "ok" if record.get("status") in DONE else "failed"


def merge(keys: list[str], ledgers: list[TaskLedger]) -> Merged:
    """Each key's final state from the last record of it across ``ledgers`` (in order)."""
    last: dict[str, tuple[dict[str, Any], str]] = {}
    written: Counter[str] = Counter()
    for ledger in ledgers:
        for record in ledger.records:
            key = record_key(record)
            last[key] = (record, ledger.name)
            if record.get("status") == "ok":
                written[key] += 1
    wanted = set(keys)
    samples: dict[str, tuple[Final, dict[str, Any] | None, str | None]] = {}
    for key in keys:
        if key in last:
            record, where = last[key]
            samples[key] = (final_of(record), record, where)
        else:
            samples[key] = ("missing", None, None)
    return Merged(
        samples,
        done_twice=sorted(k for k, n in written.items() if n > 1 and k in wanted),
        extra=sorted(k for k in last if k not in wanted),
    )


def merge_job(job: JobDir, submissions: list[Submission]) -> Merged:
    return merge(expected_keys(job), all_ledgers(job, submissions))


def shard_summaries(ledgers: list[TaskLedger]) -> list[dict[str, Any]]:
    return [
        {
            "shard": ledger.name,
            "run_id": ledger.manifest.get("run_id"),
            "status": ledger.manifest.get("status"),
            "samples": ledger.planned(),
            "records": len(ledger.latest_records()),
        }
        for ledger in ledgers
    ]


def write_report(job: JobDir, submissions: list[Submission], merged: Merged) -> None:
    """The job's merged manifest.json and samples.jsonl (one line per sample, in order)."""
    lines = []
    for key, (state, record, where) in merged.samples.items():
        task, rest = key.split("/", 1)
        sample_id, _, prefix = rest.partition(" (")
        line: dict[str, Any] = dict(record) if record else {}
        line.setdefault("task", task)
        line.setdefault("id", sample_id)
        line.setdefault("prefix", prefix[:-1])
        line.update(final=state, shard=where)
        lines.append(json.dumps(line, ensure_ascii=False))
    atomic_write_bytes(job.path / "samples.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    ledgers = all_ledgers(job, submissions)
    atomic_write_json(
        job.path / "manifest.json",
        {
            "tool": "fdb-pipeline",
            "kind": "slurm-job-report",
            "reported_at": now_iso(),
            "job": str(job.path.absolute()),
            "complete": merged.complete,
            "counts": merged.counts(),
            "by_task": merged.by_group(),
            "failed": [k for k, (s, _, _) in merged.samples.items() if s == "failed"],
            "missing": [k for k, (s, _, _) in merged.samples.items() if s == "missing"],
            "done_more_than_once": merged.done_twice,
            "not_in_job": merged.extra,
            "submissions": [vars(s) for s in submissions],
            "shards": shard_summaries(ledgers),
        },
    )

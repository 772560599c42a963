"""`slurm status`: each task's state from Slurm beside its shard's progress from its ledger."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.slurm.jobdir import JobDir, Submission
from pipeline.slurm.ledgers import DONE, task_ledger
from pipeline.slurm.queue import TaskState, array_states


@dataclass(frozen=True)
class TaskRow:
    array: int
    job_id: str
    task: int
    slurm: TaskState | None  # None: Slurm no longer knows the task (see the ledger)
    run_status: str | None  # the latest run's manifest status (None: not started)
    planned: int | None
    done: int
    failed: int


def task_rows(job: JobDir, submissions: list[Submission]) -> list[TaskRow]:
    rows = []
    for sub in submissions:
        states = array_states(sub.job_id)
        for task in range(sub.shards):
            ledger = task_ledger(job, sub.index, task)
            latest = ledger.latest_records()
            status = ledger.manifest.get("status")
            rows.append(
                TaskRow(
                    sub.index,
                    sub.job_id,
                    task,
                    states.get(task),
                    status if isinstance(status, str) else None,
                    ledger.planned(),
                    sum(1 for r in latest if r.get("status") in DONE),
                    sum(1 for r in latest if r.get("status") not in DONE),
                )
            )
    return rows

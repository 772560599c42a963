"""`python -m pipeline slurm submit|status|report|resubmit`: the commands and what they print."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.slurm.jobdir import JobDir, JobDirError
from pipeline.slurm.queue import TaskState

log = logging.getLogger("pipeline")


def run(ns: argparse.Namespace, values: dict[str, Any]) -> int:
    """One slurm action; its exit code. Usage errors raise ConfigError/DatasetError."""
    from pipeline.slurm.submit import SlurmError

    try:
        if ns.slurm_command == "submit":
            return submit(values, ns.config)
        job = JobDir(ns.job_dir)
        if ns.slurm_command == "resubmit":
            return resubmit(job, values)
        if ns.slurm_command == "status":
            return status(job)
        if ns.wait:
            wait(job, ns.poll)
        return report(job)
    except (JobDirError, SlurmError) as exc:
        log.error("%s", exc)
        return 2


def submit(values: dict[str, Any], config: Path | None) -> int:
    from pipeline.config import resolve_slurm_settings
    from pipeline.slurm.submit import submit as submit_array

    settings = resolve_slurm_settings(values, config)
    job, sub = submit_array(settings)
    print(f"job {sub.job_id}: {sub.samples} samples in {sub.shards} task(s); folder {job.path}")
    print(f"  python -m pipeline slurm status {job.path}")
    return 0


def resubmit(job: JobDir, values: dict[str, Any]) -> int:
    import dataclasses

    from pipeline.config import resolve_slurm_settings
    from pipeline.run.run import dataset
    from pipeline.slurm.queue import ACTIVE, array_states
    from pipeline.slurm.report import merge_job
    from pipeline.slurm.submit import SlurmError
    from pipeline.slurm.submit import submit as submit_array

    subs = job.require()
    for sub in subs:
        active = [k for k, st in array_states(sub.job_id).items() if st.state in ACTIVE]
        if active:
            raise SlurmError(
                f"job {sub.job_id} still has {len(active)} task(s) pending or running: wait for"
                f" them (slurm status {job.path}), or scancel {sub.job_id} first"
            )
    merged = merge_job(job, subs)
    rest = set(merged.unfinished())
    if not rest:
        print(f"nothing to resubmit: every sample of {job.path} is done")
        return 0
    settings = resolve_slurm_settings(values, job.slurm_toml)
    settings = dataclasses.replace(settings, run_dir=job.path)
    samples = [s for s in dataset(settings) if s.key in rest]
    _, sub = submit_array(settings, samples)
    print(
        f"job {sub.job_id}: the {sub.samples} failed or missing sample(s) in {sub.shards} task(s)"
    )
    return 0


def _state_text(state: TaskState | None) -> str:
    if state is None:
        return "gone from Slurm"
    return " ".join(p for p in (state.state, state.reason, state.elapsed) if p)


def status(job: JobDir) -> int:
    from pipeline.slurm.status import task_rows

    rows = task_rows(job, job.require())
    print(
        f"{'array':>5} {'job':>8} {'task':>4}  {'slurm':<34} {'run':<12} {'done':>9} {'failed':>6}"
    )
    for r in rows:
        planned = "?" if r.planned is None else str(r.planned)
        print(
            f"{r.array:>5} {r.job_id:>8} {r.task:>4}  {_state_text(r.slurm):<34}"
            f" {r.run_status or 'not started':<12} {f'{r.done}/{planned}':>9} {r.failed:>6}"
        )
    return 0


def wait(job: JobDir, poll_s: float) -> None:
    """Until every task of the job's arrays has ended; each change of their states shown."""
    from collections import Counter

    from pipeline.slurm.queue import wait_ended
    from pipeline.slurm.submit import SlurmError

    if poll_s <= 0:
        raise SlurmError(f"--poll {poll_s}: give a number of seconds > 0")
    ids = [s.job_id for s in job.require()]

    def show(active: Counter[str]) -> None:
        tally = ", ".join(f"{n} {state.lower()}" for state, n in sorted(active.items()))
        print(f"job {' '.join(ids)}: {tally or 'every task has ended'}", file=sys.stderr)

    wait_ended(ids, poll_s, show)


def report(job: JobDir) -> int:
    from pipeline.slurm.report import merge_job, write_report

    subs = job.require()
    merged = merge_job(job, subs)
    write_report(job, subs, merged)
    print(f"{'task folder (pass)':<36} {'ok':>5} {'failed':>6} {'missing':>7}")
    for group, counts in merged.by_group().items():
        print(f"{group:<36} {counts['ok']:>5} {counts['failed']:>6} {counts['missing']:>7}")
    total = merged.counts()
    print(f"{'all':<36} {total['ok']:>5} {total['failed']:>6} {total['missing']:>7}")
    for key, (state, record, where) in merged.samples.items():
        if state == "failed" and record is not None:
            print(f"  failed  {key} ({where}): {record.get('error')}")
        elif state == "missing":
            print(f"  missing {key}")
    if merged.done_twice:
        print(f"note: {len(merged.done_twice)} sample(s) were written more than once")
    print(f"merged manifest: {job.path / 'manifest.json'}", file=sys.stderr)
    if not merged.complete:
        print(f"resubmit the rest: python -m pipeline slurm resubmit {job.path}", file=sys.stderr)
    return 0 if merged.complete else 1

"""What Slurm says of an array's tasks: sacct where the cluster keeps accounting, else
scontrol (the controller's memory: running, pending, and finished ones for MinJobAge)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

QUERY_TIMEOUT_S = 30
# states of a task that has not ended (it may still write its ledger)
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


@dataclass(frozen=True)
class TaskState:
    state: str  # Slurm's: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED...
    reason: str = ""  # why it is pending, or how it ended (exit code)
    elapsed: str = ""


def task_ids(text: str) -> list[int]:
    """Array task ids as Slurm writes them: ``3``, ``[0-2%1]``, ``0,2-4``."""
    ids: list[int] = []
    for part in text.strip("[]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit():
            ids += range(int(first), int(last if last.isdigit() else first) + 1)
    return ids


def _run(args: list[str]) -> str | None:
    exe = shutil.which(args[0])
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *args[1:]], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout if done.returncode == 0 else None


def parse_sacct(job_id: str, text: str) -> dict[int, TaskState]:
    """``sacct -n -P -X -o JobID,State,Elapsed,ExitCode`` lines of one array."""
    states: dict[int, TaskState] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or not fields[0].startswith(f"{job_id}_"):
            continue
        state = fields[1].split()[0]  # "CANCELLED by 0" -> CANCELLED
        for task in task_ids(fields[0].split("_", 1)[1]):
            states[task] = TaskState(state, f"exit {fields[3]}", fields[2])
    return states


def parse_scontrol(text: str) -> dict[int, TaskState]:
    """``scontrol -o show job ARRAY_ID`` lines: one per task (pending ones may share one)."""
    states: dict[int, TaskState] = {}
    for line in text.splitlines():
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if "ArrayTaskId" not in fields:
            continue
        reason = fields.get("Reason", "None")
        exit_code = fields.get("ExitCode", "")
        done = fields.get("JobState", "") not in ("PENDING", "RUNNING", "CONFIGURING")
        state = TaskState(
            fields.get("JobState", "UNKNOWN"),
            f"exit {exit_code}" if done and exit_code else ("" if reason == "None" else reason),
            fields.get("RunTime", ""),
        )
        for task in task_ids(fields["ArrayTaskId"]):
            states[task] = state
    return states


def array_states(job_id: str) -> dict[int, TaskState]:
    """Each task's state (a task Slurm no longer knows of is absent)."""
    text = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,Elapsed,ExitCode"])
    states = parse_sacct(job_id, text) if text else {}
    if states:
        return states
    text = _run(["scontrol", "-o", "show", "job", job_id])
    return parse_scontrol(text) if text else {}


def active_counts(
    job_ids: Sequence[str], states: Callable[[str], dict[int, TaskState]] = array_states
) -> Counter[str]:
    """How many tasks of these arrays are in each state that has not ended (empty: all ended,
    or Slurm does not know them)."""
    return Counter(
        s.state for job_id in job_ids for s in states(job_id).values() if s.state in ACTIVE
    )


def wait_ended(
    job_ids: Sequence[str],
    poll_s: float = 2.0,
    on_change: Callable[[Counter[str]], None] | None = None,
    states: Callable[[str], dict[int, TaskState]] = array_states,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once no task of these arrays is pending, running or requeued (seen twice in a
    row: a controller that did not answer once is not taken for an ended job). ``on_change``
    is told each new tally of the tasks still active (to show progress)."""
    last: Counter[str] | None = None
    idle = 0
    while idle < 2:
        now = active_counts(job_ids, states)
        idle = idle + 1 if not now else 0
        if now != last and on_change is not None:
            on_change(now)
        last = now
        if idle < 2:
            sleep(poll_s)

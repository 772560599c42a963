"""What Slurm says of an array's tasks. The scontrol lines are this machine's Slurm 22.05's
(trimmed); the sacct lines follow its documented -P format (there is no accounting database here,
so `slurm status` reads scontrol in the integration tests)."""

from __future__ import annotations

from collections import Counter

from pipeline.slurm.queue import TaskState, parse_sacct, parse_scontrol, task_ids, wait_ended

SCONTROL = (
    "JobId=4 ArrayJobId=4 ArrayTaskId=2-3%1 JobName=fdb-bench JobState=PENDING"
    " Reason=JobArrayTaskLimit Dependency=(null) Requeue=1 Restarts=0 ExitCode=0:0"
    " RunTime=00:00:00 TimeLimit=365-00:00:00\n"
    "JobId=6 ArrayJobId=4 ArrayTaskId=1 JobName=fdb-bench JobState=RUNNING Reason=None"
    " ExitCode=0:0 RunTime=00:00:16\n"
    "JobId=5 ArrayJobId=4 ArrayTaskId=0 JobName=fdb-bench JobState=TIMEOUT Reason=TimeLimit"
    " ExitCode=0:15 RunTime=00:01:22\n"
)
SACCT = (
    "4_0|COMPLETED|00:01:22|0:0\n"
    "4_1|CANCELLED by 0|00:00:40|0:15\n"
    "4_[2-3%1]|PENDING|00:00:00|0:0\n"
    "40_0|COMPLETED|00:00:01|0:0\n"
)


def test_task_ids_as_slurm_writes_them() -> None:
    assert task_ids("3") == [3]
    assert task_ids("[0-2%1]") == [0, 1, 2]
    assert task_ids("0,2-4") == [0, 2, 3, 4]


def test_scontrol_lines() -> None:
    states = parse_scontrol(SCONTROL)
    assert states == {
        0: TaskState("TIMEOUT", "exit 0:15", "00:01:22"),
        1: TaskState("RUNNING", "", "00:00:16"),
        2: TaskState("PENDING", "JobArrayTaskLimit", "00:00:00"),
        3: TaskState("PENDING", "JobArrayTaskLimit", "00:00:00"),
    }


def test_sacct_lines_of_this_array_only() -> None:
    states = parse_sacct("4", SACCT)
    assert states[0] == TaskState("COMPLETED", "exit 0:0", "00:01:22")
    assert states[1].state == "CANCELLED"
    assert states[2].state == states[3].state == "PENDING"
    assert set(states) == {0, 1, 2, 3}  # not job 40's task


def test_wait_ended_follows_the_tasks_until_none_is_active_twice() -> None:
    run, pend, done = TaskState("RUNNING"), TaskState("PENDING"), TaskState("COMPLETED")
    requeued = TaskState("REQUEUED")
    polls = iter(
        [
            {0: pend, 1: pend},
            {0: run, 1: pend},
            {},  # the controller did not answer once: not taken for the end
            {0: requeued, 1: run},
            {0: done, 1: done},
            {0: done, 1: done},
        ]
    )
    seen: list[Counter[str]] = []
    sleeps: list[float] = []
    wait_ended(["7"], 0.5, seen.append, states=lambda _: next(polls), sleep=sleeps.append)
    assert seen == [
        Counter(PENDING=2),
        Counter(RUNNING=1, PENDING=1),
        Counter(),
        Counter(REQUEUED=1, RUNNING=1),
        Counter(),
    ]
    assert sleeps == [0.5] * 5
    assert next(polls, None) is None  # it stopped at the second idle answer in a row

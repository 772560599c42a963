"""The report: every shard's ledger merged; each of the job's samples counted exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.cli import main
from pipeline.run.selection import keys_text
from pipeline.slurm.jobdir import JobDir, Submission
from pipeline.slurm.ledgers import read_records
from pipeline.slurm.report import merge_job

KEYS = [
    "user_interruption/1",
    "user_interruption/1 (clean_)",
    "user_interruption/2",
    "user_interruption/2 (clean_)",
    "icc_backchannel/7",
]


def rec(key: str, status: str, run_id: str = "r", error: str | None = None) -> dict[str, Any]:
    base, _, prefix = key.partition(" (")
    task, sample_id = base.split("/")
    return {
        "task": task,
        "id": sample_id,
        "prefix": prefix.rstrip(")"),
        "status": status,
        "run_id": run_id,
        "error": error,
    }


def write_task(job: JobDir, array: int, task: int, run_id: str, *records: dict[str, Any]) -> None:
    folder = job.task_dir(array, task)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"run_id": run_id, "status": "finished", "dataset": {"samples": len(records)}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with (folder / "samples.jsonl").open("a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def make_job(tmp_path: Path) -> JobDir:
    job = JobDir(tmp_path / "job")
    job.path.mkdir()
    job.samples(0).write_text(keys_text(KEYS, "array 0"))
    job.record(Submission(0, "11", 2, len(KEYS), "array-0.sbatch", "t"))
    return job


def test_ok_failed_missing_per_task_folder_and_pass(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    write_task(job, 0, 0, "a", rec(KEYS[0], "ok", "a"), rec(KEYS[1], "skipped", "a"))
    write_task(job, 0, 1, "b", rec(KEYS[2], "failed", "b", "stall"), rec(KEYS[4], "not_run", "b"))
    merged = merge_job(job, job.submissions())
    assert list(merged.samples) == KEYS  # each exactly once, in the job's order
    assert [state for state, _, _ in merged.samples.values()] == [
        "ok", "ok", "failed", "missing", "failed",
    ]  # fmt: skip
    assert merged.counts() == {"ok": 2, "failed": 2, "missing": 1}
    assert merged.by_group() == {
        "icc_backchannel": {"ok": 0, "failed": 1, "missing": 0},
        "user_interruption": {"ok": 1, "failed": 1, "missing": 0},
        "user_interruption (clean_)": {"ok": 1, "failed": 0, "missing": 1},
    }
    assert merged.unfinished() == [KEYS[2], KEYS[3], KEYS[4]]
    assert not merged.complete


def test_a_later_array_and_a_later_line_have_the_last_word(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    write_task(job, 0, 0, "a", *(rec(k, "ok", "a") for k in KEYS[:2]))
    # task 1 was requeued: its first run failed one, its second wrote it
    write_task(job, 0, 1, "b", rec(KEYS[2], "failed", "b"))
    write_task(job, 0, 1, "c", rec(KEYS[2], "ok", "c"), rec(KEYS[3], "failed", "c"))
    job.record(Submission(1, "12", 1, 2, "array-1.sbatch", "t"))
    write_task(job, 1, 0, "d", rec(KEYS[3], "ok", "d"), rec(KEYS[4], "ok", "d"))
    merged = merge_job(job, job.submissions())
    assert merged.complete and merged.counts() == {"ok": 5, "failed": 0, "missing": 0}
    assert merged.samples[KEYS[3]][2] == "array-1/task-0"
    assert merged.done_twice == []


def test_the_same_sample_written_twice_is_reported(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    write_task(job, 0, 0, "a", *(rec(k, "ok", "a") for k in KEYS))
    write_task(job, 0, 1, "b", rec(KEYS[0], "ok", "b"), rec("user_interruption/9", "ok", "b"))
    merged = merge_job(job, job.submissions())
    assert merged.done_twice == [KEYS[0]]
    assert merged.extra == ["user_interruption/9"]


def test_a_line_still_being_written_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(rec(KEYS[0], "ok")) + '\n{"task": "user_inter')
    assert [r["id"] for r in read_records(path)] == ["1"]


def test_report_command_writes_one_manifest_and_exits_1_unless_all_ok(
    tmp_path: Path, capsys: Any
) -> None:
    job = make_job(tmp_path)
    write_task(job, 0, 0, "a", *(rec(k, "ok", "a") for k in KEYS[:4]))
    assert main(["slurm", "report", str(job.path)]) == 1
    out = capsys.readouterr().out
    assert "missing icc_backchannel/7" in out
    manifest = json.loads((job.path / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 4, "failed": 0, "missing": 1}
    assert manifest["missing"] == ["icc_backchannel/7"]
    merged_lines = (job.path / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["final"] for x in merged_lines] == ["ok"] * 4 + ["missing"]
    write_task(job, 0, 1, "b", rec(KEYS[4], "ok", "b"))
    assert main(["slurm", "report", str(job.path)]) == 0


def test_a_folder_that_is_no_job_is_a_clear_error(tmp_path: Path, caplog: Any) -> None:
    assert main(["slurm", "status", str(tmp_path)]) == 2
    assert "holds no submitted job" in caplog.text


def test_a_second_submit_into_a_job_folder_is_refused(tmp_path: Path, caplog: Any) -> None:
    job = make_job(tmp_path)
    (tmp_path / "data" / "user_interruption" / "1").mkdir(parents=True)
    args = ["--root", str(tmp_path / "data"), "--container", "none", "--run-dir", str(job.path)]
    assert main(["slurm", "submit", *args]) == 2
    assert "already holds job 11" in caplog.text and "slurm resubmit" in caplog.text

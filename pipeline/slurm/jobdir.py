"""The folder of one Slurm job of the benchmark, and what it holds.

JOB/slurm.toml                 the job's settings (`bench`'s and the array's); resubmit reads it
JOB/bench.toml                 what every task runs `bench` with
JOB/submissions.json           every array submitted for this job: its job id, shards, samples
JOB/array-I.sbatch             array I's script (readable; `sbatch` it again after an edit)
JOB/array-I.samples            array I's samples, one key a line (I = 0: the whole job)
JOB/array-I/task-K/            task K's ledger (manifest.json, samples.jsonl) and server log
JOB/logs/array-I/task-K.<job id>.out   task K's output (Slurm's --output)
JOB/manifest.json, JOB/samples.jsonl   the merged report (`slurm report`)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.results.records import atomic_write_json


class JobDirError(ValueError):
    """The folder is not a job folder (or its records are damaged)."""


@dataclass(frozen=True)
class Submission:
    """One array submitted for the job."""

    index: int
    job_id: str
    shards: int
    samples: int
    script: str  # relative to the job folder
    submitted_at: str


@dataclass(frozen=True)
class JobDir:
    path: Path

    @property
    def slurm_toml(self) -> Path:
        return self.path / "slurm.toml"

    @property
    def bench_toml(self) -> Path:
        return self.path / "bench.toml"

    @property
    def ledger(self) -> Path:
        return self.path / "submissions.json"

    def script(self, index: int) -> Path:
        return self.path / f"array-{index}.sbatch"

    def samples(self, index: int) -> Path:
        return self.path / f"array-{index}.samples"

    def array_dir(self, index: int) -> Path:
        return self.path / f"array-{index}"

    def task_dir(self, index: int, task: int) -> Path:
        return self.array_dir(index) / f"task-{task}"

    def log_dir(self, index: int) -> Path:
        return self.path / "logs" / f"array-{index}"

    def submissions(self) -> list[Submission]:
        """The arrays submitted so far, in order (none for a new folder)."""
        if not self.ledger.exists():
            return []
        try:
            raw = json.loads(self.ledger.read_text(encoding="utf-8"))
            return [Submission(**entry) for entry in raw["submissions"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise JobDirError(f"{self.ledger} is damaged ({exc}); fix or remove it") from None

    def require(self) -> list[Submission]:
        """The submissions of an existing job folder; an error naming the folder otherwise."""
        subs = self.submissions()
        if not subs:
            raise JobDirError(
                f"{self.path} holds no submitted job ({self.ledger.name} is missing); pass the"
                " folder `slurm submit` printed (its --run-dir)"
            )
        return subs

    def record(self, submission: Submission) -> None:
        subs = [*self.submissions(), submission]
        atomic_write_json(self.ledger, {"submissions": [asdict(s) for s in subs]})

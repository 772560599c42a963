"""`slurm submit` and `slurm resubmit`: write the job folder's files and hand the array to
sbatch. A resubmit is a submit of the samples that are not done (failed, never run, missing),
with the job's own settings (its slurm.toml) and any options given again."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import BenchSettings, SlurmSettings
from pipeline.dataset.discovery import Sample
from pipeline.results.atomic import atomic_write_bytes
from pipeline.results.records import new_run_id, now_iso
from pipeline.run.run import dataset
from pipeline.run.selection import keys_text
from pipeline.slurm import script
from pipeline.slurm.jobdir import JobDir, Submission
from pipeline.slurm.tomltext import settings_toml

log = logging.getLogger("pipeline")
SBATCH_TIMEOUT_S = 60
# Set per array (never in bench.toml): the task's shard, its samples, its own ledger folder;
# runtime and gpus are the task's own (a child server on the GPUs Slurm gives the task)
PER_TASK = ("run_dir", "shard", "samples_file", "sif", "image")


class SlurmError(RuntimeError):
    """A Slurm command failed; the message holds its own words."""


def default_job_dir() -> Path:
    return Path("runs") / f"slurm-{new_run_id()}"


def task_gpus(settings: SlurmSettings) -> str:
    """`bench --gpus` inside a task: the task's own GPUs (0..G-1 of those Slurm gave it)."""
    if settings.gpus_per_task == 0:
        return "none"
    return ",".join(str(i) for i in range(settings.gpus_per_task))


def bench_toml(settings: SlurmSettings) -> str:
    bench = dataclasses.replace(settings, runtime="local", gpus=task_gpus(settings))
    header = (
        "What every task of this job runs `python -m pipeline bench` with (written by\n"
        "`slurm submit`; each task adds --shard, --samples-file and --run-dir). An edit here\n"
        "applies to this array's tasks that start after it; `slurm resubmit` writes this file\n"
        "anew from slurm.toml (edit that one for the next arrays)."
    )
    # hf_cache always: its default is the submitting shell's HF_HOME, which a task's may not be
    always = ("runtime", "gpus", "hf_cache")
    return settings_toml(bench, BenchSettings, header=header, always=always, never=PER_TASK)


def slurm_toml(settings: SlurmSettings) -> str:
    header = (
        "The job's settings (`slurm submit`); `slurm resubmit` reads them, options given to it\n"
        "win. bench.toml is written from them at each (re)submit."
    )
    return settings_toml(settings, SlurmSettings, header=header, never=("shard", "samples_file"))


def _write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sbatch(script_path: Path) -> str:
    """Submit a script; its job id."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise SlurmError(
            "sbatch is not on PATH: run this on a login node of the cluster (here: make"
            " slurm-cluster, then eval $(bash scripts/slurm-cluster.sh env))"
        )
    try:
        done = subprocess.run(
            [exe, "--parsable", str(script_path)],
            capture_output=True,
            text=True,
            timeout=SBATCH_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SlurmError(f"sbatch {script_path} gave no answer in {SBATCH_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise SlurmError(
            f"sbatch {script_path} failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip().split(";")[0]


def submit(
    settings: SlurmSettings, samples: Sequence[Sample] | None = None
) -> tuple[JobDir, Submission]:
    """Write the job folder's files for a new array over ``samples`` (default: every sample
    the settings select) and submit it."""
    job = JobDir(settings.run_dir or default_job_dir())
    settings = dataclasses.replace(settings, run_dir=job.path.absolute())
    earlier = job.submissions()
    if earlier and samples is None:
        raise SlurmError(
            f"{job.path} already holds job {earlier[0].job_id}: `slurm resubmit {job.path}` runs"
            " what it has not done; pass another --run-dir for a new job"
        )
    todo = list(samples) if samples is not None else dataset(settings)
    if not todo:
        raise SlurmError("no samples to run: the dataset selection is empty")
    index = len(earlier)
    shards = min(settings.shards, len(todo))
    job.path.mkdir(parents=True, exist_ok=True)
    job.log_dir(index).mkdir(parents=True, exist_ok=True)
    if settings.container == "apptainer":
        settings.hf_cache.expanduser().mkdir(parents=True, exist_ok=True)  # a bind's source
    if settings.output_root is not None:
        settings.output_root.mkdir(parents=True, exist_ok=True)
    _write(job.slurm_toml, slurm_toml(settings))
    _write(job.bench_toml, bench_toml(settings))
    header = f"array {index} of {job.path.name}: {len(todo)} samples in {shards} shard(s)"
    _write(job.samples(index), keys_text((s.key for s in todo), header))
    path = job.script(index)
    _write(path, script.render(settings, job, index, shards))
    path.chmod(0o755)
    job_id = sbatch(path)
    sub = Submission(index, job_id, shards, len(todo), path.name, now_iso())
    job.record(sub)
    log.info(
        "submitted job %s: %d sample(s) in %d task(s); script %s; logs in %s",
        job_id, len(todo), shards, path, job.log_dir(index),
    )  # fmt: skip
    return job, sub

"""The sbatch script of one array: plain bash a user can read, edit and `sbatch` again.

Each task runs the one runner entry point - `python -m pipeline bench` on its shard
(``--shard $SLURM_ARRAY_TASK_ID/N`` of the array's samples file) - inside the SIF
(`apptainer run`, whose runscript is `bench --runtime local`: the server is the task's child
process, stopped with it, never a detached instance). ``exec`` makes that process the batch
step itself, so Slurm's signals (``--signal=B:TERM@S``, scancel, the time limit) reach it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from pipeline.config import SlurmSettings
from pipeline.slurm.jobdir import JobDir

SHEBANG = "#!/bin/bash"


def sbatch_options(settings: SlurmSettings, job: JobDir, index: int, shards: int) -> list[str]:
    """The script's #SBATCH options, in order (the user's extra ones last: they win)."""
    array = f"0-{shards - 1}" + (f"%{settings.throttle}" if settings.throttle else "")
    opts = [
        f"--job-name={settings.job_name}",
        f"--array={array}",
        f"--output={job.log_dir(index).absolute()}/task-%a.%A.out",
        "--open-mode=append",  # a requeued task adds to its log
        "--ntasks=1",
        f"--cpus-per-task={settings.cpus_per_task}",
    ]
    if settings.gpus_per_task:
        opts.append(f"--gres=gpu:{settings.gpus_per_task}")
    for flag, value in (
        ("--partition", settings.partition),
        ("--account", settings.account),
        ("--time", settings.time_limit),
        ("--mem", settings.mem),
    ):
        if value:
            opts.append(f"{flag}={value}")
    if settings.term_before_s:
        opts.append(f"--signal=B:TERM@{settings.term_before_s}")
    opts.append("--requeue" if settings.requeue else "--no-requeue")
    return [*opts, *settings.sbatch_lines]


def binds(settings: SlurmSettings) -> list[str]:
    """Apptainer binds: the dataset (read-only when outputs go elsewhere), the output root,
    the job folder, the model cache and --mount folders; each at its own path."""
    root = Path(settings.root or ".").absolute()
    out = [f"{root}:{root}:ro" if settings.output_root else f"{root}:{root}"]
    folders = [settings.output_root, settings.run_dir, settings.hf_cache.expanduser()]
    out += [f"{p.absolute()}:{p.absolute()}" for p in folders if p is not None]
    out += list(settings.mounts)
    return out


def task_command(settings: SlurmSettings) -> list[str]:
    """The command a task execs, before the task's own arguments ("${args[@]}")."""
    if settings.container == "none":
        return [sys.executable, "-m", "pipeline", "bench"]
    sif = Path(settings.sif or "personaplex.sif").absolute()
    nv = ["--nv"] if settings.gpus_per_task else []
    bind = [arg for b in binds(settings) for arg in ("--bind", b)]
    return ['"${APPTAINER:-apptainer}"', "run", *nv, *bind, str(sif)]


def _quote(word: str) -> str:
    return word if word.startswith('"${') else shlex.quote(word)


def render(settings: SlurmSettings, job: JobDir, index: int, shards: int) -> str:
    """The whole script of array ``index`` with ``shards`` tasks."""
    root = job.path.absolute()
    samples = job.samples(index).absolute()
    head = [
        SHEBANG,
        "# fdb-pipeline: Full-Duplex-Bench as a Slurm job array (python -m pipeline slurm submit).",
        f"# Task K runs `bench` on shard K of {shards} of the samples in {samples.name},",
        "# with the settings in bench.toml; its ledger goes to array-I/task-K/.",
        "# Edit and `sbatch` this file again, or: python -m pipeline slurm resubmit JOB_DIR",
        *(f"#SBATCH {opt}" for opt in sbatch_options(settings, job, index, shards)),
    ]
    command = " ".join(_quote(w) for w in task_command(settings))
    body = f"""
set -euo pipefail
job={shlex.quote(str(root))}
task="${{SLURM_ARRAY_TASK_ID:?submit this script with sbatch}}"
args=(
    --config "$job/bench.toml"
    --samples-file {shlex.quote(str(samples))}
    --shard "$task/{shards}"
    --run-dir "$job/{job.array_dir(index).name}/task-$task"
)
echo "fdb-pipeline: task $task of {shards}, job ${{SLURM_JOB_ID}}, on $(hostname)," \\
    "restart ${{SLURM_RESTART_COUNT:-0}}"
# exec: the benchmark is this step's process and gets Slurm's SIGTERM; its server is its child
exec {command} "${{args[@]}}"
"""
    return "\n".join(head) + "\n" + body

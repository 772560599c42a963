"""The sbatch script: what a user reads, edits and submits again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.config import SlurmSettings
from pipeline.slurm.jobdir import JobDir
from pipeline.slurm.script import render, sbatch_options


def settings(tmp_path: Path, **kw: object) -> SlurmSettings:
    base: dict[str, object] = {
        "root": tmp_path / "data",
        "sif": tmp_path / "pp.sif",
        "run_dir": tmp_path / "job",
        "hf_cache": tmp_path / "hf",
    }
    return SlurmSettings(**{**base, **kw}).validate()  # type: ignore[arg-type]


def sbatch_lines(text: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH")
    ]


def test_the_default_is_one_gpu_per_task_in_the_sif_with_a_term_before_the_limit(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, shards=4, partition="gpu", account="proj", time_limit="4:00:00")
    job = JobDir(tmp_path / "job")
    text = render(s, job, 0, 4)
    assert text.startswith("#!/bin/bash\n")
    assert sbatch_lines(text) == [
        "--job-name=fdb-bench",
        "--array=0-3",
        f"--output={tmp_path}/job/logs/array-0/task-%a.%A.out",
        "--open-mode=append",
        "--ntasks=1",
        "--cpus-per-task=4",
        "--gres=gpu:1",
        "--partition=gpu",
        "--account=proj",
        "--time=4:00:00",
        "--signal=B:TERM@120",
        "--requeue",
    ]
    command = next(line for line in text.splitlines() if line.startswith("exec "))
    assert command == (
        f'exec "${{APPTAINER:-apptainer}}" run --nv --bind {tmp_path}/data:{tmp_path}/data'
        f" --bind {tmp_path}/job:{tmp_path}/job --bind {tmp_path}/hf:{tmp_path}/hf"
        f' {tmp_path}/pp.sif "${{args[@]}}"'
    )
    assert f"--samples-file {tmp_path}/job/array-0.samples" in text
    assert '--shard "$task/4"' in text
    assert '--run-dir "$job/array-0/task-$task"' in text
    assert '--config "$job/bench.toml"' in text


def test_throttle_extra_lines_last_cpu_tasks_no_signal_no_requeue(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        throttle=2,
        sbatch_lines=("--qos=high", "--constraint=a100"),
        gpus_per_task=0,
        term_before_s=0,
        requeue=False,
        mem="32G",
    )
    opts = sbatch_options(s, JobDir(tmp_path / "job"), 3, 5)
    assert "--array=0-4%2" in opts
    assert opts[-2:] == ["--qos=high", "--constraint=a100"]  # last: they win
    assert "--mem=32G" in opts and "--no-requeue" in opts
    assert not any(o.startswith(("--gres", "--signal", "--partition")) for o in opts)
    text = render(s, JobDir(tmp_path / "job"), 3, 5)
    assert " run --nv " not in text  # a CPU task asks for no GPU inside the image either
    assert "/logs/array-3/task-%a.%A.out" in text


def test_an_output_root_makes_the_dataset_bind_read_only(tmp_path: Path) -> None:
    s = settings(tmp_path, output_root=tmp_path / "out", mounts=("/scratch:/scratch",))
    text = render(s, JobDir(tmp_path / "job"), 0, 1)
    assert f"--bind {tmp_path}/data:{tmp_path}/data:ro " in text
    assert f"--bind {tmp_path}/out:{tmp_path}/out " in text
    assert "--bind /scratch:/scratch " in text


def test_container_none_runs_this_python(tmp_path: Path) -> None:
    s = settings(tmp_path, container="none", sif=None)
    text = render(s, JobDir(tmp_path / "job"), 0, 2)
    assert f'exec {sys.executable} -m pipeline bench "${{args[@]}}"' in text
    assert "apptainer" not in text.split("set -euo pipefail")[1]


def test_the_script_is_valid_bash_and_refuses_to_run_outside_slurm(tmp_path: Path) -> None:
    s = settings(tmp_path, container="none", sif=None)
    path = tmp_path / "a.sbatch"
    path.write_text(render(s, JobDir(tmp_path / "job"), 0, 2))
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "submit this script with sbatch" in done.stderr

"""Settings written as TOML read back as the same settings (what each task runs with)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import (
    BenchSettings,
    SlurmSettings,
    default_hf_home,
    load_toml,
    resolve_slurm_settings,
)
from pipeline.slurm.submit import bench_toml, slurm_toml


def test_slurm_settings_round_trip(tmp_path: Path) -> None:
    s = SlurmSettings(
        root=tmp_path / "data",
        tasks=("user_interruption",),
        prefix="both",
        sif=tmp_path / "x.sif",
        hf_cache=tmp_path / "hf",
        text_prompt='She said "hi"\tand left \\ ok',
        text_prompts={"user_interruption": "ünïcode"},
        server_args=("--half", "--x=1"),
        shards=3,
        throttle=1,
        stall_timeout_s=12.5,
        warmup=False,
        sbatch_lines=("--qos=high",),
    ).validate()
    path = tmp_path / "slurm.toml"
    path.write_text(slurm_toml(s))
    assert resolve_slurm_settings({}, path) == s
    relative = SlurmSettings(root=Path("data"), container="none").validate()
    path.write_text(slurm_toml(relative))  # read from elsewhere: every path written absolute
    back = resolve_slurm_settings({}, path)
    assert back.root == Path.cwd() / "data"
    assert back.hf_cache == default_hf_home()  # $HF_HOME, else ~/.cache/huggingface


def test_bench_toml_is_the_tasks_view_local_runtime_own_gpus(tmp_path: Path) -> None:
    s = SlurmSettings(root=tmp_path, sif=tmp_path / "x.sif", gpus_per_task=2, port=0).validate()
    path = tmp_path / "bench.toml"
    path.write_text(bench_toml(s))
    values = load_toml(path, BenchSettings)  # only bench's keys: bench --config reads it
    assert values["runtime"] == "local" and values["gpus"] == "0,1" and values["port"] == 0
    assert "sif" not in values and "shards" not in values and "run_dir" not in values
    assert values["hf_cache"].is_absolute()

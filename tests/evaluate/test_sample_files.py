"""`evaluate --output-root`: the outputs where `bench --output-root` put them, out of a read-only
dataset; the evaluation reads the dataset's own files from the dataset and writes nothing there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.dataset.discovery import Sample
from pipeline.digest import file_sha256
from pipeline.evaluate.runner import STAGES
from pipeline.evaluate.sample_files import WRITTEN, sample_file
from tests.evaluate.fixtures import make_fixtures
from tests.evaluate.vad_support import require_vad_model


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_every_stage_writes_only_names_that_go_to_the_output_folder() -> None:
    sample = Sample("user_interruption", "0", Path("data/t/0"), "", Path("out/t/0"))
    passes = (("user_interruption", ""), ("user_interruption", "clean_"))
    for task, prefix in (*passes, ("synthetic_user_interruption", ""), ("icc_backchannel", "")):
        s = Sample(task, "0", Path("data/t/0"), prefix, Path("out/t/0"))
        for stage in STAGES.values():
            for made in (stage.output_path(s), *stage.side_outputs(s)):
                assert made.name in WRITTEN and made.parent == Path("out/t/0"), (stage.name, made)
    assert sample_file(sample, "input.wav") == Path("data/t/0/input.wav")
    assert sample_file(sample, "metadata.json") == Path("data/t/0/metadata.json")
    assert sample_file(sample, "output.wav") == Path("out/t/0/output.wav")


def test_evaluate_reads_outputs_from_the_output_root_and_leaves_the_dataset_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_vad_model()
    data, _ = make_fixtures(tmp_path)
    out = tmp_path / "outputs"
    for made in [p for p in data.rglob("*") if p.is_file() and p.name in WRITTEN]:
        target = out / made.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, target)  # as `bench --output-root` leaves them
    dataset_before = snapshot(data)
    argv = ["evaluate", "--root", str(data), "--output-root", str(out)]
    argv += ["--task", "user_interruption", "--task", "candor_turn_taking"]
    argv += ["--stage", "timing", "--stage", "rules", "--stage", "stats"]
    assert main([*argv, "--run-dir", str(tmp_path / "r1")]) == 0, capsys.readouterr().err
    assert snapshot(data) == dataset_before  # nothing written into the dataset
    timing = out / "user_interruption" / "0" / "latency_intervals.json"
    stamp = json.loads(timing.read_text())["fdb_pipeline"]["inputs"]
    assert stamp["input.wav"] == dataset_before["user_interruption/0/input.wav"]
    assert stamp["output.wav"] == file_sha256(out / "user_interruption" / "0" / "output.wav")
    assert (out / "candor_turn_taking" / "0" / "eval_rules.json").is_file()
    scores = json.loads((tmp_path / "r1" / "scores.json").read_text())
    assert set(scores) == {"user_interruption", "candor_turn_taking"}
    # without --output-root the same dataset has no outputs: every sample fails, naming the file
    assert main([*argv[:3], *argv[5:], "--run-dir", str(tmp_path / "r2")]) == 1
    assert "output.wav is missing" in (tmp_path / "r2" / "eval-samples.jsonl").read_text()

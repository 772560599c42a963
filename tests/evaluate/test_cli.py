"""`python -m pipeline evaluate`: usage errors exit 2 before any sample, a missing input is named
with what writes it, `stats` alone re-aggregates only current files, the mode is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.evaluate.fdb_repo import ICC_TRUTH_SHA256
from tests.evaluate.fixtures import make_fixtures
from tests.evaluate.vad_support import require_vad_model


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_fixtures(tmp_path_factory.mktemp("cli"))


def records(run_dir: Path) -> list[dict[str, object]]:
    lines = (run_dir / "eval-samples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_later_stage_is_a_usage_error(
    fixtures: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, _ = fixtures
    code = main(["evaluate", "--root", str(data), "--stage", "prosody", "--run-dir", str(tmp_path)])
    assert code == 2
    assert "stage prosody cannot run" in caplog.text
    assert not (tmp_path / "eval-samples.jsonl").exists()


def test_another_ground_truth_is_refused(
    fixtures: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, truth_dir = fixtures
    argv = [
        "evaluate",
        "--root",
        str(data),
        "--fdb-repo",
        str(truth_dir),
        "--task",
        "icc_backchannel",
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "icc_gt_distribution.json has sha256" in caplog.text
    assert ICC_TRUTH_SHA256[:12] in caplog.text


def test_no_checkout_at_all(
    fixtures: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, _ = fixtures
    argv = [
        "evaluate",
        "--root",
        str(data),
        "--fdb-repo",
        str(tmp_path / "nowhere"),
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "Full-Duplex-Bench" in caplog.text


def test_missing_asr_file_is_named_and_fails_the_run(tmp_path: Path) -> None:
    data, _ = make_fixtures(tmp_path)
    (data / "synthetic_pause_handling" / "2" / "output.json").unlink()
    run_dir = tmp_path / "run"
    argv = [
        "evaluate",
        "--root",
        str(data),
        "--task",
        "synthetic_pause_handling",
        "--stage",
        "rules",
        "--stage",
        "stats",
        "--run-dir",
        str(run_dir),
    ]
    assert main(argv) == 1
    failed = [r for r in records(run_dir) if r["status"] == "failed"]
    assert [r["sample"] for r in failed] == ["2"]
    assert "output.json is missing; it is written by the ASR stage" in str(failed[0]["error"])
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["synthetic_pause_handling"]["rules_n"] == 5


def test_backchannel_without_checkout_is_named_not_scored(
    fixtures: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = fixtures
    argv = [
        "evaluate",
        "--root",
        str(data),
        "--task",
        "icc_backchannel",
        "--stage",
        "rules",
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert {r["status"] for r in records(tmp_path)} == {"skipped"}
    assert "needs --fdb-repo" in str(records(tmp_path)[0]["error"])


def test_stats_alone_reads_only_current_files(tmp_path: Path) -> None:
    require_vad_model()
    data, _ = make_fixtures(tmp_path)
    base = ["evaluate", "--root", str(data), "--task", "user_interruption"]
    assert main([*base, "--stage", "timing", "--run-dir", str(tmp_path / "a")]) == 0
    assert not (tmp_path / "a" / "scores.json").exists()
    assert main([*base, "--stage", "stats", "--run-dir", str(tmp_path / "b")]) == 0
    assert {r["status"] for r in records(tmp_path / "b")} == {"kept"}
    scores = json.loads((tmp_path / "b" / "scores.json").read_text())
    assert scores["user_interruption"]["timing_n"] == 4
    # an output changed since: stats does not count its old file, and writes nothing
    out = data / "user_interruption" / "3" / "output.wav"
    out.write_bytes((data / "user_interruption" / "0" / "output.wav").read_bytes())
    before = (data / "user_interruption" / "3" / "latency_intervals.json").read_bytes()
    assert main([*base, "--stage", "stats", "--run-dir", str(tmp_path / "c")]) == 0
    stale = [r for r in records(tmp_path / "c") if r["status"] == "not_current"]
    assert [r["sample"] for r in stale] == ["3"]
    assert (data / "user_interruption" / "3" / "latency_intervals.json").read_bytes() == before
    scores = json.loads((tmp_path / "c" / "scores.json").read_text())
    assert scores["user_interruption"]["timing_n"] == 3


def test_the_mode_is_recorded_in_every_score(tmp_path: Path) -> None:
    data, _ = make_fixtures(tmp_path)
    argv = [
        "evaluate",
        "--root",
        str(data),
        "--task",
        "candor_turn_taking",
        "--no-fdb-compat",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert scores["candor_turn_taking"]["mode"] == "corrected"

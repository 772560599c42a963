"""Parity with FDB's own scripts: the goldens (tests/evaluate/goldens.json) were made by
running FDB's get_timing.py and v1.0 eval scripts at a pinned commit on these fixtures
(scripts/eval_goldens.py); here our evaluation runs on the same fixtures and must give the same
timing intervals exactly and the same means within 1e-9 (FDB's reading: fdb-compat)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.evaluate.runner import evaluate
from pipeline.evaluate.settings import EvalSettings
from tests.evaluate.fixtures import fixture_digests, make_fixtures
from tests.evaluate.vad_support import require_vad_model

GOLDENS = json.loads((Path(__file__).parent / "goldens.json").read_text(encoding="utf-8"))
REGENERATE = "regenerate them: make eval-goldens FDB_REPO=<your FDB checkout>"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    require_vad_model()
    root = tmp_path_factory.mktemp("parity")
    data, truth_dir = make_fixtures(root)
    assert fixture_digests(data) == GOLDENS["fixtures_sha256"], (
        "the fixtures made here differ from those the goldens were made from (another"
        f" espeak-ng or soxr?); {REGENERATE}"
    )
    settings = EvalSettings(root=data, fdb_repo=truth_dir, run_dir=root / "run")
    code, scores = evaluate(settings, truth_sha256=GOLDENS["truth_sha256"])
    assert code == 0
    return data, scores


def test_goldens_name_the_fdb_commit() -> None:
    assert len(GOLDENS["fdb_commit"]) == 40
    assert GOLDENS["versions"]["silero-vad"] == "6.2.3"


@pytest.mark.parametrize("sample", sorted(GOLDENS["timing"]))
def test_timing_intervals_are_fdbs_exactly(
    evaluated: tuple[Path, dict[str, Any]], sample: str
) -> None:
    data, _ = evaluated
    ours = json.loads((data / sample / "latency_intervals.json").read_text(encoding="utf-8"))
    want = GOLDENS["timing"][sample]
    assert ours["latency_stop_list"] == want["latency_stop_list"]
    assert ours["latency_resp_list"] == want["latency_resp_list"]


def test_timing_goldens_cover_overlap_and_response() -> None:
    # the fixtures exercise both lists, several intervals, and an empty output
    lists = GOLDENS["timing"].values()
    assert any(len(v["latency_stop_list"]) > 1 for v in lists)
    assert any(len(v["latency_resp_list"]) > 1 for v in lists)
    assert any(not v["latency_stop_list"] and not v["latency_resp_list"] for v in lists)


@pytest.mark.parametrize("task", sorted(GOLDENS["rules"]))
def test_rule_means_are_fdbs(evaluated: tuple[Path, dict[str, Any]], task: str) -> None:
    _, scores = evaluated
    for metric, want in GOLDENS["rules"][task].items():
        if metric == "n":
            assert scores[task]["rules_n"] == want
            continue
        assert scores[task][metric] == pytest.approx(want, abs=1e-9), (task, metric)
    assert scores[task]["mode"] == "fdb-compat"


def test_backchannel_readings_differ_and_both_are_kept(
    evaluated: tuple[Path, dict[str, Any]],
) -> None:
    _, scores = evaluated
    bc = scores["icc_backchannel"]
    assert bc["jsd"] == bc["jsd_fdb_compat"]
    assert bc["jsd_corrected"] != pytest.approx(bc["jsd_fdb_compat"], abs=1e-6)

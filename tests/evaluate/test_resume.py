"""Resumability: a re-run redoes only samples whose inputs or configuration changed, and a
SIGKILL in the middle of a stage leaves no partial file and loses nothing finished."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.digest import file_sha256
from pipeline.evaluate.runner import evaluate
from pipeline.evaluate.settings import EvalSettings
from tests.evaluate.fixtures import make_fixtures
from tests.evaluate.vad_support import require_vad_model

REPO = Path(__file__).resolve().parents[2]
COPIES = 6  # timing samples: enough for the kill to land mid-stage


@pytest.fixture
def data(tmp_path: Path) -> Path:
    require_vad_model()
    data, _ = make_fixtures(tmp_path)
    return data


def copies(data: Path) -> int:
    """More timing samples (copies of the four), so that a kill lands mid-stage."""
    task = data / "user_interruption"
    for i in range(4, 4 * COPIES):
        shutil.copytree(task / str(i % 4), task / str(i))
    return 4 * COPIES


def statuses(run_dir: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (run_dir / "eval-samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        found.setdefault(record["status"], []).append(record["sample"])
    return found


def finished(data: Path) -> dict[str, int]:
    out = data / "user_interruption"
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/latency_intervals.json")}


def partials(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if p.name.endswith(".partial")]


def test_rerun_redoes_only_what_changed(data: Path, tmp_path: Path) -> None:
    settings = EvalSettings(root=data, tasks=("user_interruption",), run_dir=tmp_path / "r1")
    assert evaluate(settings)[0] == 0
    before = finished(data)
    assert len(before) == 4
    # one output changes: only that sample is redone
    shutil.copy(data / "user_interruption/0/output.wav", data / "user_interruption/1/output.wav")
    again = EvalSettings(root=data, tasks=("user_interruption",), run_dir=tmp_path / "r2")
    assert evaluate(again)[0] == 0
    seen = statuses(tmp_path / "r2")
    assert seen == {"done": ["1"], "kept": sorted(set(before) - {"1"}, key=int)}
    after = finished(data)
    assert {k for k in before if before[k] != after[k]} == {"1"}
    redone = json.loads((data / "user_interruption/1/latency_intervals.json").read_text())
    new_output = file_sha256(data / "user_interruption/1/output.wav")
    assert redone["fdb_pipeline"]["inputs"]["output.wav"] == new_output


def test_sigkill_mid_stage_then_rerun(data: Path, tmp_path: Path) -> None:
    n = copies(data)
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "evaluate",
        "--root",
        str(data),
        "--task",
        "user_interruption",
        "--stage",
        "timing",
        "--run-dir",
        str(tmp_path / "k"),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(finished(data)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = finished(data)
    assert 2 <= len(done_before) < n, "the kill did not land mid-stage"
    for name in done_before:  # whatever is under the final name is complete
        json.loads((data / "user_interruption" / name / "latency_intervals.json").read_text())
    rerun = subprocess.run(
        [*cmd[:-1], str(tmp_path / "k2")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    seen = statuses(tmp_path / "k2")
    assert sorted(seen["kept"], key=int) == sorted(done_before, key=int)
    assert len(seen["done"]) == n - len(done_before)
    assert {k: v for k, v in finished(data).items() if k in done_before} == done_before
    assert partials(data) == []

"""The asr stage with the real NeMo in `.venv-asr` and a tiny random FastConformer-TDT built at
test time: FDB's word files for all four wavs of a v1.5 sample, the v1.0 interruption crop,
resume (a re-run redoes nothing; a SIGKILL mid-stage leaves no partial file and its worker
ends), and the pinned model offline named as such. One model load per evaluation run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from pipeline.digest import file_sha256
from pipeline.evaluate.asr_worker import PINNED_MODEL
from pipeline.evaluate.rules import took_turn
from pipeline.evaluate.runner import evaluate
from pipeline.evaluate.settings import EvalSettings
from pipeline.evaluate.words import read_words
from tests.evaluate.asr_support import REPO, require_asr_python, tiny_asr_model
from tests.evaluate.fixtures import timeline
from tests.evaluate.vad_support import require_vad_model

pytestmark = pytest.mark.integration
V15 = "user_backchannel"
CUT = "synthetic_user_interruption"
PLAIN = "synthetic_pause_handling"  # holds the interruption's output cropped by hand
INTERRUPT_END = 2.345
USER, MODEL = "en-us", "en-gb"
RATES = {"input.wav": 16_000, "clean_input.wav": 16_000}


def wav(path: Path, audio: np.ndarray[Any, Any], rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="PCM_16")


def make_data(root: Path) -> Path:
    v15 = root / V15 / "0"
    wav(v15 / "input.wav", timeline(16_000, 4.0, [(0.3, "Tell me about trains.", USER)]), 16_000)
    wav(v15 / "clean_input.wav", timeline(16_000, 3.0, [(0.3, "Tell me.", USER)]), 16_000)
    wav(v15 / "output.wav", timeline(24_000, 4.0, [(1.0, "Trains are fast.", MODEL)]), 24_000)
    clean = timeline(24_000, 3.0, [(0.5, "Sure, trains.", MODEL)])
    wav(v15 / "clean_output.wav", clean, 24_000)
    spoken = timeline(24_000, 5.0, [(0.2, "I like the quiet hills and the stars above.", MODEL)])
    cut = root / CUT / "0"
    wav(cut / "output.wav", spoken, 24_000)
    meta = [{"context": "c", "interrupt": "i", "timestamp": [1.5, INTERRUPT_END]}]
    (cut / "interrupt.json").write_text(json.dumps(meta))
    # what FDB transcribes: the samples from int(END * rate) on, as PCM-16 again
    data, rate = sf.read(str(cut / "output.wav"))
    wav(root / PLAIN / "0" / "output.wav", data[int(INTERRUPT_END * rate) :], rate)
    return root


def statuses(run_dir: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (run_dir / "eval-samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        key = f"{record['task']}/{record['sample']}{record['prefix']}"
        found.setdefault(record["status"], []).append(key)
    return found


def settings(data: Path, run_dir: Path, model: Path | str) -> EvalSettings:
    return EvalSettings(
        root=data, prefix="both", stages=("asr",), asr_model=str(model), run_dir=run_dir
    )


@pytest.fixture(scope="module")
def model() -> Path:
    started = time.monotonic()
    path = tiny_asr_model()
    print(f"tiny ASR model: {path.stat().st_size} bytes, {time.monotonic() - started:.1f} s")
    return path


@pytest.fixture(scope="module")
def first_run(model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """asr, then the rules and the scores on its words, in one run."""
    require_vad_model()
    base = tmp_path_factory.mktemp("asr")
    data = make_data(base / "data")
    started = time.monotonic()
    stages = ("asr", "rules", "stats")
    code, scores = evaluate(replace(settings(data, base / "r1", model), stages=stages))
    print(f"first asr run: {time.monotonic() - started:.1f} s")
    assert code == 0, (base / "r1" / "eval-samples.jsonl").read_text()
    (base / "scores.json").write_text(json.dumps(scores))
    return data, base


def document(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_all_four_wavs_of_a_v15_sample(first_run: tuple[Path, Path]) -> None:
    data, base = first_run
    folder = data / V15 / "0"
    done = [f"{CUT}/0", f"{PLAIN}/0", f"{V15}/0", f"{V15}/0clean_", f"{PLAIN}/0", f"{CUT}/0"]
    assert sorted(statuses(base / "r1")["done"]) == sorted(done)  # the last two: their rules
    for name in ("input", "clean_input", "output", "clean_output"):
        doc = document(folder / f"{name}.json")
        assert set(doc) == {"text", "chunks", "fdb_pipeline"}
        duration = sf.info(str(folder / f"{name}.wav")).duration
        assert doc["chunks"], f"{name}.json: the tiny model emitted no word"
        assert doc["text"] == " ".join(c["text"] for c in doc["chunks"])
        for chunk in doc["chunks"]:
            assert set(chunk) == {"text", "timestamp"} and chunk["text"].strip()
            start, end = chunk["timestamp"]
            assert 0.0 <= start <= end <= duration + 0.5, (name, chunk)
        stamp = doc["fdb_pipeline"]
        assert stamp["stage"] == "asr"
        prefix = "clean_" if name.startswith("clean_") else ""
        assert set(stamp["inputs"]) == {f"{prefix}input.wav", f"{prefix}output.wav"}
    # FDB's own script would have written the clean pass over output.json (its issue #6)
    assert document(folder / "output.json") != document(folder / "clean_output.json")


def test_interruption_is_cropped_and_shifted_back(first_run: tuple[Path, Path]) -> None:
    data, _ = first_run
    cut = document(data / CUT / "0" / "output.json")
    by_hand = document(data / PLAIN / "0" / "output.json")
    assert cut["chunks"], "the tiny model emitted no word after the interruption"
    assert [c["text"] for c in cut["chunks"]] == [c["text"] for c in by_hand["chunks"]]
    for shifted, plain in zip(cut["chunks"], by_hand["chunks"], strict=True):
        assert shifted["timestamp"] == [t + INTERRUPT_END for t in plain["timestamp"]]
        assert shifted["timestamp"][0] >= INTERRUPT_END
    assert cut["fdb_pipeline"]["values"]["crop_after_s"] == INTERRUPT_END
    assert "interrupt.json" in cut["fdb_pipeline"]["inputs"]


def test_the_rules_read_the_words(first_run: tuple[Path, Path]) -> None:
    data, base = first_run
    folder = data / PLAIN / "0"
    made = document(folder / "eval_rules.json")["fdb_pipeline"]
    assert made["inputs"] == {"output.json": file_sha256(folder / "output.json")}
    scores = json.loads((base / "scores.json").read_text())
    assert scores[PLAIN]["tor"] == took_turn(read_words(folder / "output.json"))
    assert scores[PLAIN]["rules_n"] == 1 and scores[V15]["asr_n"] == 2


def test_a_rerun_redoes_nothing(first_run: tuple[Path, Path], model: Path) -> None:
    data, base = first_run
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*.json")}
    started = time.monotonic()
    code, _ = evaluate(settings(data, base / "r2", model))
    took = time.monotonic() - started
    assert code == 0
    assert set(statuses(base / "r2")) == {"kept"} and len(statuses(base / "r2")["kept"]) == 4
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*.json")} == before
    print(f"re-run with nothing to do: {took:.2f} s")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def test_sigkill_mid_stage_then_rerun(model: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    task = data / PLAIN
    for i in range(1, 8):
        shutil.copytree(task / "0", task / str(i))
    cmd = [sys.executable, "-m", "pipeline", "evaluate", "--root", str(data), "--task", PLAIN]
    cmd += ["--stage", "asr", "--asr-model", str(model), "--run-dir"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "k")], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(task.glob("*/output.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the evaluation ended before the kill"
        time.sleep(0.01)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.parent.name for p in task.glob("*/output.json"))
    assert 1 <= len(done) < 8, "the kill did not land mid-stage"
    assert [p for p in data.rglob("*") if p.name.endswith(".partial")] == []
    for name in done:  # whatever is under the final name is complete
        assert document(task / name / "output.json")["fdb_pipeline"]["stage"] == "asr"
    # the worker ends with its client (its input closes), even a killed one
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for w in workers:
        status = Path(f"/proc/{w}/status")
        assert not status.exists() or "zombie" in status.read_text(), "the ASR worker outlived"
    again = [*cmd, str(tmp_path / "k2")]
    rerun = subprocess.run(again, cwd=REPO, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    seen = statuses(tmp_path / "k2")
    assert sorted(k.split("/")[1] for k in seen["kept"]) == done
    assert len(seen["done"]) == 8 - len(done)


def test_the_pinned_model_offline_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_asr_python()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = make_data(tmp_path / "data")
    run = EvalSettings(root=data, tasks=(PLAIN,), stages=("asr",), run_dir=tmp_path / "r")
    started = time.monotonic()
    code, _ = evaluate(run)
    took = time.monotonic() - started
    assert code == 1
    (record,) = [
        json.loads(x) for x in (tmp_path / "r/eval-samples.jsonl").read_text().split("\n") if x
    ]
    assert record["status"] == "failed"
    assert f"{PINNED_MODEL} at revision" in record["error"]
    assert "not in the Hugging Face cache" in record["error"]
    assert "--asr-model PATH.nemo" in record["error"]
    assert not (data / PLAIN / "0" / "output.json").exists()
    print(f"the pinned model offline: failed in {took:.1f} s")

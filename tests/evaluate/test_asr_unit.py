"""The ASR stage's pure parts, without NeMo: FDB's crop and word format, which files each pass
transcribes, and the errors that name their fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.dataset.discovery import Sample
from pipeline.evaluate.asr_client import asr_requirement, cached_pinned_model, model_identity
from pipeline.evaluate.asr_worker import (
    PINNED_FILE,
    PINNED_MODEL,
    PINNED_REVISION,
    crop,
    fdb_document,
    mono,
)
from pipeline.evaluate.stage_asr import AsrStage, interruption_end
from pipeline.evaluate.words import EvalInputError, read_words


def test_crop_truncates_the_sample_index_as_fdb() -> None:
    wave = np.arange(1000, dtype=np.float64)
    # 0.29 * 100 is 28.999999999999996 in floating point: FDB's int() keeps sample 28
    assert crop(wave, 100, 0.29)[0] == 28
    assert crop(wave, 24000, 0.01).shape[0] == 1000 - 240
    assert crop(wave, 16000, 5.0).shape[0] == 0


def test_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 3.0], [2.0, 4.0]])
    assert mono(stereo).tolist() == [2.0, 3.0]
    assert mono(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]


def test_fdb_document_shifts_times_and_joins_words(tmp_path: Path) -> None:
    words = [
        {"word": "Hello,", "start": 0.08, "end": 0.4, "start_offset": 1},
        {"word": "there.", "start": 0.48, "end": 0.8, "start_offset": 6},
    ]
    doc = fdb_document(words, 13.144)
    assert doc == {
        "text": "Hello, there.",
        "chunks": [
            {"text": "Hello,", "timestamp": [0.08 + 13.144, 0.4 + 13.144]},
            {"text": "there.", "timestamp": [0.48 + 13.144, 0.8 + 13.144]},
        ],
    }
    assert fdb_document([]) == {"text": "", "chunks": []}
    # the rules stage reads it back as FDB's ASR format
    path = tmp_path / "output.json"
    path.write_text(json.dumps(doc))
    assert [w.text for w in read_words(path)] == ["Hello,", "there."]


def sample(tmp_path: Path, task: str, prefix: str = "") -> Sample:
    folder = tmp_path / task / "0"
    folder.mkdir(parents=True, exist_ok=True)
    return Sample(task, "0", folder, prefix)


def test_each_pass_names_its_files(tmp_path: Path) -> None:
    stage = AsrStage()
    v15 = sample(tmp_path, "user_backchannel")
    assert stage.input_names(v15) == ["input.wav", "output.wav"]
    assert stage.output_path(v15) == v15.folder / "output.json"
    assert stage.side_outputs(v15) == [v15.folder / "input.json"]
    clean = sample(tmp_path, "user_backchannel", "clean_")
    assert stage.input_names(clean) == ["clean_input.wav", "clean_output.wav"]
    assert stage.output_path(clean) == clean.folder / "clean_output.json"
    assert stage.side_outputs(clean) == [clean.folder / "clean_input.json"]
    v10 = sample(tmp_path, "synthetic_user_interruption")
    assert stage.input_names(v10) == ["output.wav", "interrupt.json"]
    assert stage.side_outputs(v10) == []
    pause = sample(tmp_path, "candor_pause_handling")
    assert stage.input_names(pause) == ["output.wav"]


def test_interruption_end_is_read_as_fdb_reads_it(tmp_path: Path) -> None:
    folder = sample(tmp_path, "synthetic_user_interruption").folder
    meta = [{"context": "c", "interrupt": "i", "timestamp": [10.5, 13.144]}]
    (folder / "interrupt.json").write_text(json.dumps(meta))
    assert interruption_end(folder) == 13.144
    (folder / "interrupt.json").write_text(json.dumps([{"timestamp": 3}]))
    with pytest.raises(EvalInputError, match=r"interrupt\.json has no"):
        interruption_end(folder)
    (folder / "interrupt.json").unlink()
    with pytest.raises(EvalInputError, match=r"interrupt\.json is missing"):
        interruption_end(folder)


def test_requirements_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "no-venv" / "bin" / "python"
    need = asr_requirement(absent, PINNED_MODEL, explicit=True)
    assert need is not None and "make asr-env" in need and str(absent) in need
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    need = asr_requirement(python, str(tmp_path / "x.nemo"), explicit=True)
    assert need is not None and "x.nemo" in need
    assert "not 'openai/whisper'" in str(asr_requirement(python, "openai/whisper", True))
    # the pinned model: by default only when cached; asked for, the worker downloads it
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert cached_pinned_model() is None
    need = asr_requirement(python, PINNED_MODEL, explicit=False)
    assert need is not None and "--asr-model PATH.nemo" in need
    assert asr_requirement(python, PINNED_MODEL, explicit=True) is None
    snapshot = tmp_path / "hub/models--nvidia--parakeet-tdt-0.6b-v2/snapshots" / PINNED_REVISION
    snapshot.mkdir(parents=True)
    (snapshot / PINNED_FILE).write_bytes(b"x")
    assert cached_pinned_model() == snapshot / PINNED_FILE
    assert asr_requirement(python, PINNED_MODEL, explicit=False) is None


def test_model_identity(tmp_path: Path) -> None:
    assert model_identity(PINNED_MODEL) == {"repo": PINNED_MODEL, "revision": PINNED_REVISION}
    nemo = tmp_path / "m.nemo"
    nemo.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert model_identity(str(nemo)) == {"nemo_sha256": digest}


def test_missing_venv_is_a_usage_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data" / "candor_pause_handling" / "0").mkdir(parents=True)
    monkeypatch.setenv("FDB_ASR_PYTHON", str(tmp_path / "nowhere" / "python"))
    argv = ["evaluate", "--root", str(tmp_path / "data"), "--stage", "asr"]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
    assert "stage asr cannot run" in caplog.text
    assert "make asr-env" in caplog.text and "nowhere" in caplog.text
    assert not (tmp_path / "run" / "eval-samples.jsonl").exists()

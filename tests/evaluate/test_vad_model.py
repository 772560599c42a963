"""The pinned VAD model: found in the wheel without importing the package, checked by sha256;
without it a stage that needs it is refused at once, with the command that fetches it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.evaluate import vad_model
from pipeline.evaluate.vad_model import ONNX_MEMBER, SILERO_WHEEL, VadModelError, model_bytes


@pytest.fixture
def wheel_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vad_model, "wheel_dirs", lambda: [tmp_path])
    monkeypatch.setattr(vad_model, "_from_installed", lambda member: None)
    return tmp_path


def test_missing_model_names_the_fetch_command(wheel_dir: Path) -> None:
    with pytest.raises(VadModelError, match=r"pip download --no-deps silero-vad==6\.2\.3"):
        model_bytes()


def test_another_file_in_the_wheel_is_refused(wheel_dir: Path) -> None:
    with zipfile.ZipFile(wheel_dir / SILERO_WHEEL, "w") as archive:
        archive.writestr(ONNX_MEMBER, b"not the model")
    with pytest.raises(VadModelError, match="not the pinned"):
        model_bytes()


def test_a_broken_wheel_is_named(wheel_dir: Path) -> None:
    (wheel_dir / SILERO_WHEEL).write_bytes(b"truncated")
    with pytest.raises(VadModelError, match="not a usable silero-vad wheel"):
        model_bytes()


def test_stage_refused_before_any_sample(
    wheel_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data" / "user_interruption" / "0").mkdir(parents=True)
    argv = [
        "evaluate",
        "--root",
        str(tmp_path / "data"),
        "--stage",
        "timing",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    assert "stage timing cannot run" in caplog.text
    assert "pip download" in caplog.text
    assert not (tmp_path / "run").exists()

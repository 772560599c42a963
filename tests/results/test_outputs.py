import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.dataset.discovery import Sample
from pipeline.results import atomic
from pipeline.results.outputs import (
    align_output,
    inspect_outputs,
    remove_leftovers,
    set_aside_previous,
    write_outputs,
)
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE
from pipeline.stream.session import TextPiece


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    folder = tmp_path / "user_interruption" / "1"
    folder.mkdir(parents=True)
    return Sample("user_interruption", "1", folder)


MADE = {"input_sha256": "abc", "settings_sha256": "s1"}


def is_complete(sample: Sample, input_sha256: str = "abc", settings: str = "s1") -> bool:
    return inspect_outputs(sample, input_sha256, settings).state == "complete"


def frames_of(n: int) -> np.ndarray:
    return np.concatenate([np.full(FRAME_SAMPLES, (k + 1) / 100, np.float32) for k in range(n)])


def test_alignment_reference_convention() -> None:
    length = 5 * FRAME_SAMPLES - 100
    got = align_output(frames_of(5), length)
    assert got.shape == (length,)
    assert np.all(got[:FRAME_SAMPLES] == 0)  # one frame of silence first
    assert np.all(got[FRAME_SAMPLES : 2 * FRAME_SAMPLES] == np.float32(0.01))  # then frame 0
    assert got[-1] == np.float32(0.04)  # cut: frame 4 does not fit
    short = align_output(frames_of(2), length)  # moshi-style fewer frames: zero-padded
    assert np.all(short[3 * FRAME_SAMPLES :] == 0) and short[3 * FRAME_SAMPLES - 1] == np.float32(
        0.02
    )
    assert align_output(frames_of(3), 100).tolist() == [0.0] * 100


def test_write_then_complete_and_corruption_detected(sample: Sample) -> None:
    aligned = align_output(frames_of(4), 4 * FRAME_SAMPLES)
    pieces = [TextPiece(" hello", 1, 0.16, 0.2)]
    write_outputs(sample, aligned, pieces, MADE)
    data, rate = sf.read(sample.output_path)
    assert rate == SAMPLE_RATE and data.shape == (4 * FRAME_SAMPLES,)
    info = sf.info(sample.output_path)
    assert (info.channels, info.subtype) == (1, "PCM_16")
    doc = json.loads(sample.text_path.read_text())
    assert doc["text"] == " hello" and doc["pieces"][0]["frame"] == 1
    assert is_complete(sample, "abc")
    assert not is_complete(sample, "other input")  # the input changed: redo
    # a truncated wav (what a killed reference client leaves) is never complete
    raw = sample.output_path.read_bytes()
    sample.output_path.write_bytes(raw[: len(raw) // 2])
    assert not is_complete(sample, "abc")


def test_wav_without_commit_marker_is_not_complete(sample: Sample) -> None:
    sf.write(sample.output_path, np.zeros(4800, np.float32), SAMPLE_RATE, subtype="PCM_16")
    assert not is_complete(sample)
    sample.text_path.write_text("{not json")
    assert not is_complete(sample)


def test_crash_mid_write_leaves_nothing_that_looks_finished(
    sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    aligned = align_output(frames_of(2), 2 * FRAME_SAMPLES)
    write_outputs(sample, aligned, [], MADE)
    assert is_complete(sample, "abc")
    real_replace = atomic.os.replace
    calls = []

    def die_on_json(src: str, dst: Path) -> None:
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", die_on_json)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(sample, align_output(frames_of(1), 2 * FRAME_SAMPLES), [], {})
    assert not is_complete(sample, "abc")  # old marker removed first, new one never landed
    assert list(sample.folder.glob("*.partial")) == []  # temporary files cleaned up


def test_leftover_temporaries_are_removed(sample: Sample) -> None:
    left = sample.folder / f".{sample.output_path.name}.x1y2.partial"
    left.write_bytes(b"half")
    other = sample.folder / "keep.partial"
    other.write_bytes(b"not ours")
    assert remove_leftovers(sample) == [left]
    assert not left.exists() and other.exists()


def test_stale_or_foreign_output_is_set_aside_not_deleted(sample: Sample) -> None:
    from pipeline.results.outputs import set_aside_stale

    assert set_aside_stale(sample) is None  # nothing there
    sample.output_path.write_bytes(b"a reference client's half-written wav")
    sample.text_path.write_text("{}")
    moved = set_aside_stale(sample)
    assert moved == sample.folder / "output.wav.stale"
    assert moved.read_bytes().startswith(b"a reference")
    assert not sample.output_path.exists() and not sample.text_path.exists()


def test_outputs_of_other_settings_are_not_complete_and_are_set_aside(sample: Sample) -> None:
    write_outputs(sample, align_output(frames_of(2), 2 * FRAME_SAMPLES), [], MADE)
    found = inspect_outputs(sample, "abc", "s2")  # same input, other settings
    assert (found.state, found.settings_sha256) == ("other_settings", "s1")
    assert inspect_outputs(sample, "xyz", "s1").state == "incomplete"  # another input
    wav = sample.output_path.read_bytes()
    moved = set_aside_previous(sample, found.settings_sha256)
    assert moved.name == "output.wav.prev-s1" and moved.read_bytes() == wav  # never deleted
    assert (sample.folder / "output_text.json.prev-s1").is_file()
    assert not sample.output_path.exists() and not sample.text_path.exists()


def test_outputs_without_a_settings_record_count_as_other_settings(sample: Sample) -> None:
    """Outputs of an older version of this tool carry no settings: never taken as complete."""
    write_outputs(sample, align_output(frames_of(1), FRAME_SAMPLES), [], {"input_sha256": "abc"})
    found = inspect_outputs(sample, "abc", "s1")
    assert (found.state, found.settings_sha256) == ("other_settings", None)
    assert set_aside_previous(sample, None).name == "output.wav.prev-unknown"

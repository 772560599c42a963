from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.dataset.audio import (
    InputAudioError,
    load_input,
    target_length,
    to_model_rate,
)
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(rate: int) -> None:
    x = tone(rate, 1.3)
    y = to_model_rate(x, rate)
    assert y.dtype == np.float32
    assert y.shape[0] == target_length(x.shape[0], rate) == round(1.3 * SAMPLE_RATE)
    spectrum = np.abs(np.fft.rfft(y[2400:-2400]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / (y.shape[0] - 4800)
    assert abs(peak_hz - 440) < 2
    # the passband keeps its amplitude
    assert 0.45 < np.max(np.abs(y[2400:-2400])) < 0.55


def test_resampler_rejects_aliasing() -> None:
    # 13 kHz lies above the 12 kHz Nyquist limit at 24 kHz: it must be removed, not folded to 11 kHz
    x = tone(48000, 1.0, freq=13000.0)
    y = to_model_rate(x, 48000)
    assert np.sqrt(np.mean(y[2400:-2400] ** 2)) < 0.01  # filtered out, not folded back to 11 kHz


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [(16000, 1, "PCM_16"), (48000, 2, "PCM_24"), (24000, 1, "FLOAT"), (44100, 3, "PCM_U8")],
)
def test_load_any_format_to_mono_24k_frames(
    tmp_path: Path, rate: int, channels: int, subtype: str
) -> None:
    mono = tone(rate, 0.5)
    data = np.repeat(mono[:, None], channels, axis=1)
    path = tmp_path / "input.wav"
    sf.write(path, data, rate, subtype=subtype)
    audio = load_input(path)
    assert (audio.source_rate, audio.source_channels) == (rate, channels)
    assert audio.length == round(0.5 * SAMPLE_RATE)
    frames = audio.frames()
    assert frames.shape == (audio.n_frames, FRAME_SAMPLES)
    assert audio.n_frames == int(np.ceil(audio.length / FRAME_SAMPLES))
    assert np.all(frames.reshape(-1)[audio.length :] == 0)  # padding is silence
    assert len(audio.sha256) == 64


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "input.wav"
    with pytest.raises(InputAudioError, match=str(missing)):
        load_input(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not a wav file at all")
    with pytest.raises(InputAudioError, match="not readable audio"):
        load_input(garbage)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputAudioError, match="no audio"):
        load_input(empty)
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    with pytest.raises(InputAudioError, match=str(zero)):
        load_input(zero)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(InputAudioError, match="NaN"):
        load_input(nan)
    folder = tmp_path / "dir.wav"
    folder.mkdir()
    with pytest.raises(InputAudioError, match="not a file"):
        load_input(folder)

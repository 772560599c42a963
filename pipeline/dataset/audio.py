"""Read an input wav into what the model eats: mono float32 at 24 kHz, in whole 80 ms frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipeline.digest import file_sha256
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE, Float32Array


class InputAudioError(ValueError):
    """An input file cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class InputAudio:
    path: Path
    source_rate: int
    source_channels: int
    source_subtype: str
    samples: Float32Array  # mono, 24 kHz, exactly `length` samples (not padded)
    sha256: str

    @property
    def length(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.length / SAMPLE_RATE

    @property
    def n_frames(self) -> int:
        return math.ceil(self.length / FRAME_SAMPLES)

    def frames(self) -> Float32Array:
        """The audio zero-padded to whole frames, shaped (n_frames, 1920)."""
        padded = np.zeros(self.n_frames * FRAME_SAMPLES, dtype=np.float32)
        padded[: self.length] = self.samples
        return padded.reshape(self.n_frames, FRAME_SAMPLES)


def target_length(n_source: int, source_rate: int) -> int:
    """The input's duration counted in 24 kHz samples (what the output must be as long as)."""
    return round(n_source * SAMPLE_RATE / source_rate)


def to_model_rate(mono: Float32Array, source_rate: int) -> Float32Array:
    """Resample with soxr (very high quality) and fix the length to exactly the duration."""
    want = target_length(mono.shape[0], source_rate)
    if source_rate == SAMPLE_RATE:
        out = mono
    else:
        out = soxr.resample(mono, source_rate, SAMPLE_RATE, quality="VHQ").astype(np.float32)
    if out.shape[0] != want:
        fixed = np.zeros(want, dtype=np.float32)
        n = min(want, out.shape[0])
        fixed[:n] = out[:n]
        out = fixed
    return np.ascontiguousarray(out, dtype=np.float32)


def load_input(path: Path) -> InputAudio:
    """Read any rate/channel count/subtype soundfile knows; errors name the file and the fix."""
    if not path.exists():
        raise InputAudioError(
            f"{path} is missing; put the sample's input wav there or remove the folder"
        )
    if not path.is_file():
        raise InputAudioError(f"{path} is not a file")
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputAudioError(
            f"{path} is not readable audio ({exc}); replace it with a valid wav file"
        ) from None
    if data.shape[0] == 0:
        raise InputAudioError(f"{path} holds no audio (0 samples); replace it with the real input")
    if not np.isfinite(data).all():
        raise InputAudioError(f"{path} contains NaN or infinite samples; re-export the file")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return InputAudio(
        path=path,
        source_rate=int(rate),
        source_channels=int(data.shape[1]),
        source_subtype=str(info.subtype),
        samples=to_model_rate(np.ascontiguousarray(mono, dtype=np.float32), int(rate)),
        sha256=file_sha256(path),
    )

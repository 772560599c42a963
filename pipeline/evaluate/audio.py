"""Wavs as FDB's scripts see them: ``torchaudio.load`` gives float32 (PCM16 / 32768) per
channel; the timing resamples to 16 kHz with torchaudio's default kernel (``resample``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.evaluate.resample import Float32Array, resample
from pipeline.evaluate.vad import VAD_RATE
from pipeline.evaluate.words import EvalInputError


@dataclass(frozen=True)
class Wave:
    samples: Float32Array
    rate: int

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0] / self.rate)

    def at_vad_rate(self) -> Float32Array:
        return resample(self.samples, self.rate, VAD_RATE)


INFERENCE = "the inference (`python -m pipeline bench` or `infer`)"


def read_wave(path: Path, made_by: str = INFERENCE) -> Wave:
    """A mono wav as float32; a missing, unreadable or multi-channel file is a clear error."""
    if not path.is_file():
        raise EvalInputError(f"{path} is missing; it is written by {made_by}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise EvalInputError(f"{path} is not readable audio ({exc}); redo {made_by}") from exc
    if data.shape[1] != 1:
        raise EvalInputError(
            f"{path} has {data.shape[1]} channels; FDB's evaluation reads mono only"
            " (sox IN OUT remix 1 keeps the first channel)"
        )
    return Wave(np.ascontiguousarray(data[:, 0]), int(rate))

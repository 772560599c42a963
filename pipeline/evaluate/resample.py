"""Resampling to the evaluation's 16 kHz, numerically as torchaudio's default ``resample``.

FDB's timing script resamples with torchaudio's default: windowed-sinc interpolation with a
Hann window, ``lowpass_filter_width`` 6 and ``rolloff`` 0.99, in float32. soxr (the client's
resampler) moves some VAD boundaries by a whole 512-sample window, so the evaluation has its own
port of that kernel in numpy: the rates are reduced by their gcd to ``orig`` input and ``new``
output samples per block, ``new`` filters (one per output phase) are applied to the input
(zero-padded by ``width`` in front and ``width + orig`` behind) at a stride of ``orig``, and the
phases are interleaved, cut to ``ceil(new * length / orig)`` samples.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def sinc_kernel(orig: int, new: int) -> tuple[Float32Array, int]:
    """The (new, 2 * width + orig) filter bank for rates already divided by their gcd, and
    ``width`` (the padding in front), computed in float32 as the reference does."""
    cutoff = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / cutoff)
    f32 = np.float32
    taps = np.arange(-width, width + orig, dtype=f32)[None, :] / f32(orig)
    phases = np.arange(0, -new, -1, dtype=f32)[:, None] / f32(new)
    t = (phases + taps) * f32(cutoff)
    t = np.clip(t, -LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH).astype(f32)
    window = np.cos(t * f32(math.pi / LOWPASS_FILTER_WIDTH / 2)) ** 2
    t = t * f32(math.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        sinc = np.where(t == 0, f32(1.0), np.sin(t) / t)
    kernel = (sinc * (window * f32(cutoff / orig))).astype(f32)
    return kernel, width


def resample(wave: Float32Array, orig_rate: int, new_rate: int) -> Float32Array:
    """Resample a mono float32 signal from ``orig_rate`` to ``new_rate`` (Hz)."""
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    wave = np.asarray(wave, dtype=np.float32)
    if orig_rate == new_rate:
        return wave
    gcd = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // gcd, new_rate // gcd
    kernel, width = sinc_kernel(orig, new)
    length = wave.shape[0]
    padded = np.concatenate([np.zeros(width, np.float32), wave, np.zeros(width + orig, np.float32)])
    taps = kernel.shape[1]
    n_blocks = (padded.shape[0] - taps) // orig + 1
    windows = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_blocks, taps),
        strides=(padded.strides[0] * orig, padded.strides[0]),
        writeable=False,
    )
    out = (windows @ kernel.T).reshape(-1)
    target = math.ceil(new * length / orig)
    return np.ascontiguousarray(out[:target], dtype=np.float32)

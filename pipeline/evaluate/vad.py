"""Silero VAD without PyTorch: the pinned ONNX model, run window by window with onnxruntime.

The model takes 512 new samples at 16 kHz behind the last 64 samples it saw (576 in all), a
recurrent state of shape 2x1x128 and the rate, and returns the speech probability of the
window and the next state. A last short window is zero-padded. :func:`speech_segments` turns
the probabilities into segments with the package's default settings (threshold 0.5, exit
threshold 0.35, speech at least 250 ms, silence at least 100 ms, 30 ms of padding, no maximum
length), as its ``get_speech_timestamps`` does; :func:`segments_in_seconds` is its
``return_seconds`` rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.evaluate.resample import Float32Array
from pipeline.evaluate.vad_model import model_bytes

VAD_RATE = 16_000
WINDOW = 512
CONTEXT = 64
STATE_SHAPE = (2, 1, 128)

Segment = tuple[int, int]  # [start, end) in samples at VAD_RATE


@dataclass(frozen=True)
class VadParams:
    """The package's defaults (the only settings FDB uses)."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


class OnnxVad:
    """One ONNX Runtime session on one thread; :meth:`probabilities` resets the state per call."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            model_bytes(), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, wave: Float32Array) -> list[float]:
        """The speech probability of every 512-sample window of a 16 kHz mono signal."""
        wave = np.asarray(wave, dtype=np.float32)
        n_windows = -(-wave.shape[0] // WINDOW)
        padded = np.zeros(CONTEXT + n_windows * WINDOW, dtype=np.float32)
        padded[CONTEXT : CONTEXT + wave.shape[0]] = wave
        state = np.zeros(STATE_SHAPE, dtype=np.float32)
        rate = np.array(VAD_RATE, dtype=np.int64)
        probs: list[float] = []
        for i in range(n_windows):
            chunk = padded[i * WINDOW : i * WINDOW + CONTEXT + WINDOW][None, :]
            out, state = self._session.run(None, {"input": chunk, "state": state, "sr": rate})
            probs.append(float(out.reshape(-1)[0]))
        return probs


def _raw_segments(probs: list[float], n_samples: int, params: VadParams) -> list[list[int]]:
    """Speech runs: enter at >= threshold, leave after min_silence below the exit threshold."""
    min_speech = VAD_RATE * params.min_speech_ms / 1000
    min_silence = VAD_RATE * params.min_silence_ms / 1000
    found: list[list[int]] = []
    start: int | None = None
    silence_from = 0  # 0: no silence seen since the last speech window
    for i, prob in enumerate(probs):
        here = WINDOW * i
        if prob >= params.threshold:
            silence_from = 0
            if start is None:
                start = here
                continue
        if start is not None and prob < params.neg_threshold:
            if not silence_from:
                silence_from = here
            if here - silence_from >= min_silence:
                if silence_from - start > min_speech:
                    found.append([start, silence_from])
                start, silence_from = None, 0
    if start is not None and n_samples - start > min_speech:
        found.append([start, n_samples])
    return found


def _pad(found: list[list[int]], n_samples: int, params: VadParams) -> list[Segment]:
    """Pad each segment by speech_pad_ms; closer neighbours split the gap between them."""
    pad = VAD_RATE * params.speech_pad_ms / 1000
    for i, seg in enumerate(found):
        if i == 0:
            seg[0] = int(max(0, seg[0] - pad))
        if i == len(found) - 1:
            seg[1] = int(min(n_samples, seg[1] + pad))
            continue
        nxt = found[i + 1]
        gap = nxt[0] - seg[1]
        if gap < 2 * pad:
            seg[1] += int(gap // 2)
            nxt[0] = int(max(0, nxt[0] - gap // 2))
        else:
            seg[1] = int(min(n_samples, seg[1] + pad))
            nxt[0] = int(max(0, nxt[0] - pad))
    return [(s, e) for s, e in found]


def speech_segments(
    probs: list[float], n_samples: int, params: VadParams | None = None
) -> list[Segment]:
    """Speech segments in samples, from the window probabilities of an ``n_samples`` signal."""
    params = params or VadParams()
    return _pad(_raw_segments(probs, n_samples, params), n_samples, params)


def segments_in_seconds(segments: list[Segment], n_samples: int) -> list[tuple[float, float]]:
    """Seconds rounded to 0.1 s and the end capped at the signal's length (``return_seconds``)."""
    length_s = n_samples / VAD_RATE
    return [
        (max(round(s / VAD_RATE, 1), 0), min(round(e / VAD_RATE, 1), length_s)) for s, e in segments
    ]

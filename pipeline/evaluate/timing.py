"""The timing stage's computation: VAD segments of input and output at 16 kHz, merged, turned
into FDB's ``latency_intervals.json`` lists, plus one reduction of ours per sample.

Our reduction (FDB defines none), relative to ``metadata.json``'s overlap window [t0, t1]:
- ``stop_latency_s``: for the first ``latency_stop_list`` interval that meets [t0, t1], its end
  minus max(its start, t0) - how long after the overlap's onset both were still talking; None
  when the model was not talking during the overlap.
- ``response_latency_s``: for the first ``latency_resp_list`` pair whose user end is at or after
  t0 (the end of the user speech holding the overlap), model start minus user end; None when
  the model never started speaking after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.evaluate.audio import Wave
from pipeline.evaluate.intervals import (
    MODEL_MERGE_GAP_S,
    USER_MERGE_GAP_S,
    Span,
    merge_close,
    response_intervals,
    stop_intervals,
)
from pipeline.evaluate.vad import VAD_RATE, OnnxVad, speech_segments


def speech_spans(vad: OnnxVad, wave: Wave) -> list[Span]:
    """VAD speech segments of a wav, in seconds at 16 kHz (not rounded)."""
    samples = wave.at_vad_rate()
    segments = speech_segments(vad.probabilities(samples), samples.shape[0])
    return [(s / VAD_RATE, e / VAD_RATE) for s, e in segments]


def latency_intervals(vad: OnnxVad, user: Wave, model: Wave) -> dict[str, list[list[float]]]:
    """FDB's two lists for one sample."""
    user_spans = merge_close(speech_spans(vad, user), USER_MERGE_GAP_S)
    model_spans = merge_close(speech_spans(vad, model), MODEL_MERGE_GAP_S)
    return {
        "latency_stop_list": stop_intervals(user_spans, model_spans),
        "latency_resp_list": response_intervals(user_spans, model_spans),
    }


def overlap_window(metadata: Any) -> tuple[float, float] | None:
    """``metadata.json``'s ``timestamps`` [t0, t1], or None when it has none."""
    stamps = metadata.get("timestamps") if isinstance(metadata, dict) else None
    if (
        isinstance(stamps, list)
        and len(stamps) == 2
        and all(isinstance(t, int | float) and not isinstance(t, bool) for t in stamps)
    ):
        return float(stamps[0]), float(stamps[1])
    return None


def reduce_sample(
    stops: Sequence[Sequence[float]],
    responses: Sequence[Sequence[float]],
    window: tuple[float, float],
) -> dict[str, float | None]:
    """Our per-sample reduction (see the module's docstring)."""
    t0, t1 = window
    stop = next((e - max(s, t0) for s, e in stops if e > t0 and s < t1), None)
    response = next((m - u for u, m in responses if u >= t0), None)
    return {
        "stop_latency_s": None if stop is None else round(stop, 3),
        "response_latency_s": None if response is None else round(response, 3),
    }

"""FDB v1.0's turn-taking rules, per sample (``eval_pause_handling.py``,
``eval_smooth_turn_taking.py``, ``eval_backchannel.py``), as pure functions.

- Took the turn (TOR 1) when the ASR heard speech spanning at least 1 s, or more than 3 words.
- Turn-taking latency: the first word's start minus the turn's end mark
  (``turn_taking.json[0].timestamp[0]``), 0 when negative, counted only when TOR is 1.
- Backchannel: over the VAD segments of the output (seconds, 0.1 s resolution), a segment over
  3 s takes the turn and stops the scan; every shorter one is a backchannel candidate and
  decides TOR by its words (more than 3, or at least 1 s long, or 3 words: 1; else 0) - the
  last one scanned decides. Frequency: candidates per second of output. JSD: candidates counted
  into 0.2 s bins (a candidate covers every bin from its start's to its end's), normalized with
  1e-10 added, against the ground truth distribution stretched linearly to the same number of
  bins: ``scipy.spatial.distance.jensenshannon`` (natural log), 1 without any candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.evaluate.words import Word

TURN_MIN_S = 1.0
TURN_MAX_WORDS = 3  # at most this many words in under TURN_MIN_S: no turn
BACKCHANNEL_MAX_S = 3.0
BACKCHANNEL_MAX_WORDS = 2
JSD_BIN_S = 0.2
JSD_EPSILON = 1e-10


def took_turn(words: Sequence[Word]) -> int:
    """1 if the model took the turn. A last word without an end counts from its start (as the
    pause script does; the turn-taking script would stop with a TypeError there)."""
    if not words:
        return 0
    first, last = words[0].start, words[-1]
    end = last.end if last.end is not None else last.start
    if first is None or end is None:
        return 0 if len(words) <= TURN_MAX_WORDS else 1
    if end - first < TURN_MIN_S:
        return 0 if len(words) <= TURN_MAX_WORDS else 1
    return 1


def turn_latency(words: Sequence[Word], turn_end_s: float) -> float | None:
    """Seconds from the user's turn end to the model's first word; None without a turn."""
    if not took_turn(words) or words[0].start is None:
        return None
    return max(0.0, words[0].start - turn_end_s)


def _words_in(words: Sequence[Word], start: float, end: float) -> list[str]:
    found = []
    for word in words:
        w_start, w_end = word.start, word.end
        if w_start is None or (w_end is None and w_start < end):
            continue
        if w_end is None:
            w_end = w_start
        inside = w_start >= start and w_end <= end
        over_end = w_start <= end and w_end > end
        over_start = w_start <= start and w_end > start
        if inside or over_end or over_start:
            found.append(word.text)
    return found


@dataclass(frozen=True)
class Backchannel:
    tor: int
    freq: float
    jsd: float
    candidates: list[tuple[float, float]]


def backchannel_tor(
    segments: Sequence[tuple[float, float]], words: Sequence[Word]
) -> tuple[int, list[tuple[float, float]]]:
    tor = 0
    candidates: list[tuple[float, float]] = []
    for start, end in segments:
        length = end - start
        if length > BACKCHANNEL_MAX_S:
            tor = 1
            break
        n_words = len(_words_in(words, start, end))
        if n_words > TURN_MAX_WORDS or length >= TURN_MIN_S:
            tor = 1
        else:
            tor = 0 if n_words <= BACKCHANNEL_MAX_WORDS else 1
        candidates.append((start, end))
    return tor, candidates


def backchannel_jsd(
    candidates: Sequence[tuple[float, float]], duration_s: float, truth: Sequence[float]
) -> float:
    if not candidates:
        return 1.0
    from scipy.spatial.distance import jensenshannon

    counts = np.zeros(int(duration_s / JSD_BIN_S) + 1)
    for start, end in candidates:
        first, last = int(start / JSD_BIN_S), int(end / JSD_BIN_S)
        counts[first : min(last + 1, counts.shape[0])] += 1
    counts = counts + JSD_EPSILON
    predicted = counts / np.sum(counts)
    stretched = np.interp(
        np.linspace(0, 1, counts.shape[0]), np.linspace(0, 1, len(truth)), np.asarray(truth)
    )
    return float(jensenshannon(predicted, stretched))


def backchannel(
    segments: Sequence[tuple[float, float]],
    words: Sequence[Word],
    duration_s: float,
    truth: Sequence[float],
) -> Backchannel:
    tor, candidates = backchannel_tor(segments, words)
    freq = len(candidates) / duration_s
    return Backchannel(tor, freq, backchannel_jsd(candidates, duration_s, truth), candidates)

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from pipeline.evaluate.rules import (
    backchannel,
    backchannel_jsd,
    backchannel_tor,
    took_turn,
    turn_latency,
)
from pipeline.evaluate.words import Word


def words(*spans: tuple[float | None, float | None]) -> list[Word]:
    return [Word(f"w{i}", s, e) for i, (s, e) in enumerate(spans)]


def test_took_turn() -> None:
    assert took_turn([]) == 0
    assert took_turn(words((0.0, 0.3), (0.4, 0.9))) == 0  # short, few words
    assert took_turn(words(*[(0.1 * i, 0.1 * i + 0.05) for i in range(4)])) == 1  # 4 words
    assert took_turn(words((0.0, 0.3), (0.9, 1.2))) == 1  # spans 1.2 s
    # a last word without an end counts from its start
    assert took_turn(words((0.0, 0.3), (0.5, None))) == 0
    assert took_turn(words((0.0, 0.3), (1.5, None))) == 1


def test_turn_latency_clamped_and_only_with_a_turn() -> None:
    long_turn = words((2.5, 3.0), (3.1, 3.9))
    assert turn_latency(long_turn, 2.0) == pytest.approx(0.5)
    assert turn_latency(words((1.0, 1.5), (1.6, 2.4)), 2.0) == 0.0
    assert turn_latency(words((2.5, 2.6)), 2.0) is None


def test_backchannel_tor_last_short_segment_decides_a_long_one_stops() -> None:
    ws = words((1.0, 1.2), (5.0, 5.1), (5.1, 5.2), (5.2, 5.3), (5.3, 5.4))
    assert backchannel_tor([(1.0, 1.3)], ws) == (0, [(1.0, 1.3)])
    tor, cands = backchannel_tor([(1.0, 1.3), (5.0, 5.5)], ws)  # 4 words: a turn
    assert (tor, cands) == (1, [(1.0, 1.3), (5.0, 5.5)])
    assert backchannel_tor([(5.0, 5.5), (1.0, 1.3)], ws)[0] == 0  # the last one decides
    assert backchannel_tor([(1.0, 1.3), (2.0, 5.5), (6.0, 6.2)], ws) == (1, [(1.0, 1.3)])
    assert backchannel_tor([(7.0, 8.2)], ws)[0] == 1  # >= 1 s


def test_word_selection_with_missing_ends() -> None:
    # an end-less word that starts before the segment's end is skipped (as FDB does)
    ws = [Word("a", 1.0, None), Word("b", 1.1, 1.2), Word("c", 1.2, 1.3), Word("d", 2.0, None)]
    tor, _ = backchannel_tor([(1.0, 1.5)], ws)
    assert tor == 0  # b, c only
    ws.append(Word("e", 1.3, 1.4))
    assert backchannel_tor([(1.0, 1.5)], ws)[0] == 1  # three words


def test_jsd_bins_and_stretch() -> None:
    truth = [0.25, 0.25, 0.25, 0.25]
    assert backchannel_jsd([], 1.0, truth) == 1.0
    got = backchannel_jsd([(0.0, 0.2)], 0.8, truth)  # bins 0 and 1 of 5
    counts = np.array([1, 1, 0, 0, 0]) + 1e-10
    want = jensenshannon(counts / counts.sum(), np.full(5, 0.25))
    assert got == pytest.approx(float(want), abs=1e-12)
    # a candidate past the last bin is cut, not an error
    assert math.isfinite(backchannel_jsd([(0.7, 5.0)], 0.8, truth))


def test_backchannel_frequency_per_second_of_output() -> None:
    scored = backchannel([(1.0, 1.2), (3.0, 3.3)], [], 10.0, [0.5, 0.5])
    assert scored.freq == pytest.approx(0.2)
    assert scored.tor == 0

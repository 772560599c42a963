from __future__ import annotations

from pipeline.evaluate.intervals import (
    MODEL_MERGE_GAP_S,
    USER_MERGE_GAP_S,
    merge_close,
    response_intervals,
    stop_intervals,
)


def test_merge_thresholds_are_the_ones_fdbs_code_runs() -> None:
    assert (USER_MERGE_GAP_S, MODEL_MERGE_GAP_S) == (0.6, 0.5)
    spans = [(0.0, 1.0), (1.55, 2.0), (3.0, 4.0)]
    assert merge_close(spans, USER_MERGE_GAP_S) == [(0.0, 2.0), (3.0, 4.0)]
    assert merge_close(spans, MODEL_MERGE_GAP_S) == spans
    assert merge_close([(2.0, 3.0), (0.0, 5.0)], 0.1) == [(0.0, 5.0)]  # sorted, contained
    assert merge_close([], 0.5) == []


def test_stop_intervals_walk_both_lists_and_keep_the_shortest_per_end() -> None:
    user = [(0.0, 2.0), (3.0, 6.0)]
    model = [(1.0, 4.0), (5.0, 7.0)]
    assert stop_intervals(user, model) == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    # two intersections ending at the same millisecond: the shorter is kept
    assert stop_intervals([(0.0, 2.0), (1.5, 2.0)], [(1.0, 2.0)]) == [[1.0, 2.0]]
    assert stop_intervals([(0.0, 1.0)], [(1.0, 2.0)]) == []  # touching is no overlap


def test_response_intervals_first_model_start_after_each_user_end() -> None:
    user = [(0.0, 1.0), (1.2, 2.0), (5.0, 6.0)]
    model = [(0.5, 0.9), (2.5, 3.0), (7.0, 8.0)]
    # user ends 1.0 and 2.0 both lead to 2.5: the later user end (shorter gap) is kept
    assert response_intervals(user, model) == [[2.0, 2.5], [6.0, 7.0]]
    assert response_intervals([(0.0, 9.0)], model) == []
    assert response_intervals([(0.0, 1.0)], [(1.0, 2.0)]) == []  # strictly after


def test_rounding_to_milliseconds() -> None:
    assert stop_intervals([(0.12345, 1.0)], [(0.0, 0.98765)]) == [[0.123, 0.988]]
    assert response_intervals([(0.0, 1.00049)], [(1.23456, 2.0)]) == [[1.0, 1.235]]

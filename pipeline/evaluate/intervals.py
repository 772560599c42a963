"""FDB's timing intervals (``get_timing.py``), from speech segments in seconds.

- Segments closer than a gap are merged: the user's at <= 0.6 s, the model's at <= 0.5 s (the
  values FDB's code runs; its comments say 300 ms and 50 ms).
- ``latency_stop_list``: the intersections of user and model speech, found by walking both
  lists (the one whose segment ends first moves on; on a tie the model's), then one per end
  time in milliseconds (the shortest wins), sorted by end, rounded to 1 ms.
- ``latency_resp_list``: for each user segment, [its end, the first model start strictly after
  it], one per model start in milliseconds (the latest user end wins), sorted by model start.
"""

from __future__ import annotations

USER_MERGE_GAP_S = 0.6
MODEL_MERGE_GAP_S = 0.5

Span = tuple[float, float]


def merge_close(segments: list[Span], max_gap: float) -> list[Span]:
    """Join segments whose gap to the previous one is at most ``max_gap`` seconds."""
    merged: list[Span] = []
    for start, end in sorted(segments):
        if merged and start - merged[-1][1] <= max_gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def stop_intervals(user: list[Span], model: list[Span]) -> list[list[float]]:
    """Where the user and the model speak at once (``latency_stop_list``)."""
    shortest: dict[int, Span] = {}
    i = j = 0
    while i < len(user) and j < len(model):
        start = max(user[i][0], model[j][0])
        end = min(user[i][1], model[j][1])
        if end > start:
            key = round(end * 1000)
            kept = shortest.get(key)
            if kept is None or end - start < kept[1] - kept[0]:
                shortest[key] = (start, end)
        if user[i][1] < model[j][1]:
            i += 1
        else:
            j += 1
    ordered = sorted(shortest.values(), key=lambda span: span[1])
    return [[round(s, 3), round(e, 3)] for s, e in ordered]


def response_intervals(user: list[Span], model: list[Span]) -> list[list[float]]:
    """From each user end to the model's next start (``latency_resp_list``)."""
    by_start: dict[int, list[float]] = {}
    for _, user_end in user:
        nxt = next((s for s, _ in model if s > user_end), None)
        if nxt is None:
            continue
        key = round(nxt * 1000)
        pair = [round(user_end, 3), round(nxt, 3)]
        if key not in by_start or pair[0] > by_start[key][0]:
            by_start[key] = pair
    return sorted(by_start.values(), key=lambda pair: pair[1])

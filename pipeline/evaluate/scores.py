"""``scores.json`` and the table beside FDB's published figures."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pipeline.evaluate.published import MODE_OF_PUBLISHED, PUBLISHED
from pipeline.evaluate.stages import Metrics
from pipeline.results.atomic import atomic_write_bytes

Scores = dict[str, Metrics]
SHOWN = ("tor", "freq", "jsd", "latency", "judge", "stop_latency", "response_latency")
SHOWN_PREFIX = "behaviour_C"  # the v1.5 behaviour judge's shares, one per tag


def write_scores(path: Path, scores: Scores) -> None:
    atomic_write_bytes(path, (json.dumps(scores, indent=2, sort_keys=True) + "\n").encode())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table_lines(scores: Scores, mode: str) -> Iterable[str]:
    """One line per task and metric: ours, then FDB's published figures per model."""
    models = list(PUBLISHED)
    head = ["task", "metric", f"ours ({mode})", *(f"{m} FDB ({MODE_OF_PUBLISHED})" for m in models)]
    rows = [head]
    for task, metrics in scores.items():
        shares = sorted(k for k in metrics if k.startswith(SHOWN_PREFIX))
        for key in (*SHOWN, *shares):
            if key in metrics:
                published = [PUBLISHED[m].get(task, {}).get(key) for m in models]
                rows.append([task, key, _cell(metrics[key]), *(_cell(p) for p in published)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

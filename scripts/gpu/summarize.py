#!/usr/bin/env python3
"""Summarise the GPU check (scripts/gpu/run-personaplex-7b.sh): per-session frames/s, real-time
factor, p50/p95 frame lag, peak GPU memory and the card, as a Markdown table.

    python3 scripts/gpu/summarize.py OUT_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

FRAME_S = 0.08


def samples(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "samples.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def row(pace: str, recs: list[dict[str, object]]) -> str:
    ok = [r for r in recs if r.get("status") == "ok"]
    if not ok:
        errors = sorted({str(r.get("error")) for r in recs}) or ["no samples.jsonl"]
        return f"| {pace} | 0/{len(recs)} ok | {'; '.join(errors)[:200]} | | | |"
    fps = [_num(r["frames_received"]) / _num(r["stream_s"]) for r in ok]
    rtf = [_num(r["realtime_factor"]) for r in ok]
    lags = [r["lag"] for r in ok if isinstance(r.get("lag"), dict)]
    p50 = statistics.median(_num(lag["p50_s"]) for lag in lags) if lags else None  # type: ignore[index]
    p95 = max(_num(lag["p95_s"]) for lag in lags) if lags else None  # type: ignore[index]
    lag_text = f"{p50:.3f} / {p95:.3f}" if p50 is not None and p95 is not None else "-"
    return (
        f"| {pace} | {len(ok)}/{len(recs)} ok | {statistics.median(fps):.1f}"
        f" ({min(fps):.1f}-{max(fps):.1f}) | {statistics.median(rtf):.3f} | {lag_text} |"
        f" {1 / FRAME_S:.1f} |"
    )


def peak_memory_mib(out: Path) -> str:
    trace = out / "gpu-trace.csv"
    if not trace.is_file():
        return "-"
    used = [int(line.split(",")[0]) for line in trace.read_text().splitlines() if line.strip()]
    return f"{max(used)} MiB" if used else "-"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    card = (out / "card.txt").read_text().strip() if (out / "card.txt").is_file() else "?"
    print(f"card: {card}; peak GPU memory used: {peak_memory_mib(out)}\n")
    print("| pace | samples | frames/s per session, median (min-max) | real-time factor |"
          " frame lag p50 / p95 (s) | real time is (frames/s) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for pace in ("none", "realtime"):
        print(row(pace, samples(out / f"run-{pace}")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

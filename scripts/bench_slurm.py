"""One dataset over 1, 2 and 3 array tasks on the local Slurm (scripts/slurm-cluster.sh) with the
real tiny moshi server on CPU: wall time, Slurm's overhead per task, the scaling ratio; then, on
paper, a full v1.5 run (both passes) on K GPUs.

    make bench-slurm            (or: PYTHONPATH=. .venv/bin/python scripts/bench_slurm.py)

The dataset is read-only for the runs: each run writes under its own --output-root, so every
run does all the work. Times from Slurm (scontrol) have one-second resolution.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.config import SlurmSettings
from pipeline.dataset.synthesize import SynthSpec, synthesize
from pipeline.slurm.queue import ACTIVE, array_states
from pipeline.slurm.submit import submit
from tests.real_server import ensure_tiny_model, server_python, tiny_model_flags

REPO = Path(__file__).resolve().parents[1]
SERVE = REPO / "containers" / "tiny_moshi" / "serve.py"
V15_SESSIONS = 499 * 2  # both passes
FRAME_RATE = 12.5  # frames per second of audio


def scontrol_times(job_id: str) -> dict[int, dict[str, float]]:
    """Each array task's submit, start and end time, as Slurm recorded them."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    spans = {}
    for line in out.splitlines():
        f = dict(w.split("=", 1) for w in line.split() if "=" in w)
        spans[int(f["ArrayTaskId"])] = {
            k: time.mktime(time.strptime(f[k], "%Y-%m-%dT%H:%M:%S"))
            for k in ("SubmitTime", "StartTime", "EndTime")
        }
    return spans


def iso_s(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def one_run(data: Path, out: Path, job: Path, shards: int, model: Path) -> dict[str, Any]:
    settings = SlurmSettings(
        root=data, output_root=out, run_dir=job, prefix="both", container="none",
        shards=shards, gpus_per_task=0, cpus_per_task=1, port=0, profile="moshi",
        hf_cache=job.parent / "hf", server_command=f"{server_python()} {SERVE}",
        server_args=tuple(f"{f}" for f in tiny_model_flags(model)),
    ).validate()  # fmt: skip
    t0 = time.time()
    _, sub = submit(settings)
    while True:
        states = array_states(sub.job_id)
        if states and all(s.state not in ACTIVE for s in states.values()):
            break
        time.sleep(0.2)
    wall = time.time() - t0
    assert all(s.state == "COMPLETED" for s in states.values()), states
    tasks = []
    frames = stream = 0.0
    for k, span in sorted(scontrol_times(sub.job_id).items()):
        folder = job / "array-0" / f"task-{k}"
        m = json.loads((folder / "manifest.json").read_text())
        records = [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()]
        assert all(r["status"] == "ok" for r in records)
        frames += sum(r["frames_sent"] for r in records)
        stream += sum(r["stream_s"] for r in records)
        own = iso_s(m["finished_at"]) - iso_s(m["started_at"])
        tasks.append({"slurm_s": span["EndTime"] - span["StartTime"], "run_s": own,
                      "queued_s": span["StartTime"] - span["SubmitTime"]})  # fmt: skip
    return {"shards": shards, "wall_s": wall, "tasks": tasks, "frames_per_s": frames / stream}


def report(results: list[dict[str, Any]], mean_s: float) -> None:
    """The README's table, the per-session rate, and the estimate for v1.5 on K GPUs."""
    base = results[0]["wall_s"]
    print(
        "| array tasks | wall time | speed-up | Slurm start latency | Slurm time beyond the run |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        started = [t for t in r["tasks"] if t["queued_s"] <= 2]  # not waiting for a free CPU
        latency = statistics.median(t["queued_s"] for t in started) if started else float("nan")
        beyond = statistics.median(t["slurm_s"] - t["run_s"] for t in r["tasks"])
        speedup = base / r["wall_s"]
        print(
            f"| {r['shards']} | {r['wall_s']:.1f} s | {speedup:.2f} | {latency:.0f} s"
            f" | {beyond:.0f} s |"
        )
    rate = statistics.median(r["frames_per_s"] for r in results)
    print(f"\nper-session rate, tiny CPU server: {rate:.1f} frames/s ({rate / FRAME_RATE:.2f}x)")
    audio_h = V15_SESSIONS * mean_s / 3600
    print(f"v1.5, both passes: {V15_SESSIONS} sessions x {mean_s:g} s (assumed) = {audio_h:.1f} h")
    for k in (1, 4, 8, 16, 32):
        minutes = audio_h * 60 / k  # one real-time session per GPU (12.5 frames/s)
        print(f"  K={k:>2} GPUs in real time: {minutes:.0f} min + start-up + one sample's tail")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-task", type=int, default=2, help="samples per v1.5 task folder")
    ap.add_argument(
        "--v15-mean-seconds", type=float, default=30.0,
        help="assumed mean input length of a v1.5 sample, for the estimate (not measured here)",
    )  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("SLURM_CONF", "/var/lib/fdb-slurm/slurm.conf")
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = ensure_tiny_model(REPO / ".cache" / "tiny-moshi")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        data = Path(tmp) / "data"
        synthesize(data, SynthSpec(tasks=("user_interruption", "user_backchannel"),
                                   per_task=args.per_task, seconds_trailing=0.3))  # fmt: skip
        for shards in (1, 2, 3):
            r = one_run(
                data, Path(tmp) / f"out-{shards}", Path(tmp) / f"job-{shards}", shards, model
            )
            results.append(r)
            print(json.dumps(r), file=sys.stderr)
    report(results, args.v15_mean_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

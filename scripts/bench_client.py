"""Client throughput and memory against an in-process zero-cost server.

The server answers the handshake at once and echoes every audio message back unchanged (our own
Ogg pages), so what is timed is the client alone: read + resample the input, encode, send,
receive, decode, align and write the outputs, records. The whole process is pinned to one core.
Prints frames per second beside the reference clients' fixed 12.5 frames/s (real-time pacing),
and the resident memory over the run.

    python scripts/bench_client.py [--samples 500] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf
from rich.console import Console
from rich.table import Table
from websockets.asyncio.server import ServerConnection, serve

from pipeline.config import InferSettings
from pipeline.dataset.discovery import discover
from pipeline.results.records import RunRecords
from pipeline.run.sample import SampleRunner
from pipeline.run.slots import ServerSlot
from pipeline.stream.protocol import FRAME_SECONDS

REFERENCE_FPS = 1 / FRAME_SECONDS  # sleep(0.08) per frame in both reference clients


async def echo(ws: ServerConnection) -> None:
    await ws.send(b"\x00")
    async for msg in ws:
        if isinstance(msg, bytes) and msg[:1] == b"\x01":
            await ws.send(msg)


def make_dataset(root: Path, samples: int, seconds: float) -> None:
    rng = np.random.default_rng(0)
    for i in range(samples):
        folder = root / "user_interruption" / str(i)
        folder.mkdir(parents=True)
        x = 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32)
        sf.write(folder / "input.wav", x, 16000, subtype="PCM_16")  # 16 kHz: resampling counts


async def run(root: Path, run_dir: Path, encoder: str) -> dict[str, float]:
    settings = InferSettings(
        root=root, profile="personaplex", run_dir=run_dir, overwrite=True, encoder=encoder
    )  # type: ignore[arg-type]
    records = RunRecords(run_dir, "bench")
    records.start({}, {})
    runner = SampleRunner(settings, records)
    proc = psutil.Process()
    rss: list[int] = []
    rtfs: list[float] = []  # per sample: streaming time / audio duration (unpaced)
    frames = 0
    async with serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        slot = ServerSlot(url=f"ws://127.0.0.1:{port}/api/chat")
        t0 = time.perf_counter()
        for sample in discover(root):
            rec = await runner.run(sample, slot)
            if rec.status != "ok" or rec.realtime_factor is None:
                raise SystemExit(f"bench sample failed: {rec.error}")
            frames += rec.frames_received
            rtfs.append(rec.realtime_factor)
            rss.append(proc.memory_info().rss)
        wall = time.perf_counter() - t0
    records.finish("finished")
    return {
        "frames": frames,
        "wall_s": wall,
        "fps": frames / wall,
        "rtf_median": float(np.median(rtfs)),
        "rss_first_mb": rss[0] / 2**20,
        "rss_last_mb": rss[-1] / 2**20,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mb": (rss[-1] - rss[min(len(rss) - 1, 10)]) / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each input")
    ap.add_argument("--encoders", nargs="+", default=["webclient", "sphn"])
    args = ap.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=130)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_dataset(root, args.samples, args.seconds)
        for encoder in args.encoders:
            results[encoder] = asyncio.run(run(root, Path(tmp) / f"run-{encoder}", encoder))
    console.print(
        f"{args.samples} samples x {args.seconds:.1f} s at 16 kHz, one core,"
        " zero-cost echo server in the same process"
    )
    table = Table(
        "encoder",
        "frames",
        "wall s",
        "frames/s",
        "x reference 12.5/s",
        "real-time factor (median)",
        "RSS first MB",
        "RSS last MB",
        "RSS peak MB",
        "goal",
    )
    goal_fps, goal_mb = 1000, 200
    for encoder, r in results.items():
        ok = r["fps"] >= goal_fps and r["rss_peak_mb"] < goal_mb
        table.add_row(
            encoder,
            f"{r['frames']:.0f}",
            f"{r['wall_s']:.1f}",
            f"{r['fps']:.0f}",
            f"{r['fps'] / REFERENCE_FPS:.0f}x",
            f"{r['rtf_median']:.4f}",
            f"{r['rss_first_mb']:.0f}",
            f"{r['rss_last_mb']:.0f}",
            f"{r['rss_peak_mb']:.0f}",
            "[green]met[/]" if ok else "[red]NOT met[/]",
        )
    console.print(table)
    console.print(
        f"goal: >= {goal_fps} frames/s and peak RSS < {goal_mb} MB; unpaced, each sample streams"
        " far faster than real time (real-time factor << 1)"
    )


if __name__ == "__main__":
    main()

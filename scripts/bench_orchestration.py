"""Orchestration costs with the tiny real moshi server in Docker (CPU image), measured side by
side in one run:

- readiness detection delay: the server's port first answers (a 5 ms prober) -> wait_ready
  returns (its 100 ms poll);
- crash detection delay: the container's process exits during start-up (Docker's FinishedAt)
  -> wait_ready raises ServerExited;
- teardown: stop() of a running server (SIGTERM, save the log, remove the container);
- orchestration overhead: `bench` command start -> first session, minus the server's own load
  time (container start -> port answers);
- `--pace none` against `--pace realtime` wall time for the same dataset.

    make image-cpu && PYTHONPATH=. .venv/bin/python scripts/bench_orchestration.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.dataset.synthesize import SynthSpec, synthesize
from pipeline.server.base import ServerExited, ServerSpec
from pipeline.server.docker_backend import DockerBackend
from pipeline.server.preflight import free_port
from pipeline.server.readiness import probe, wait_ready
from tests.docker_support import docker_tiny_args, ensure_cpu_image, ensure_engine
from tests.real_server import REPO_ROOT, ensure_tiny_model, tiny_model_flags

REPEATS = 3


def docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return base + float(f"0.{frac or '0'}")


def watch_port(port: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        if probe("127.0.0.1", port, timeout_s=0.2):
            out.append(time.time())
            return
        time.sleep(0.005)


def tiny_spec(model: Path, port: int, command: list[str] | None = None) -> ServerSpec:
    cmd = command or [
        "python",
        "/opt/tiny_moshi/serve.py",
        "--host",
        "0.0.0.0",
        "--port",
        "8998",
        "--static",
        "none",
        *tiny_model_flags(model),
    ]
    return ServerSpec(
        cmd,
        port=port,
        env={"HF_HUB_OFFLINE": "1", "NO_TORCH_COMPILE": "1"},
        mounts={model: str(model)},
        run_id="orch-bench",
    )


def readiness_and_teardown(image: str, model: Path, logs: Path) -> tuple[list[float], list[float]]:
    delays, teardowns = [], []
    for _ in range(REPEATS):
        port = free_port()
        backend = DockerBackend(tiny_spec(model, port), logs, image)
        seen: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=watch_port, args=(port, stop, seen))
        backend.start()
        prober.start()
        wait_ready(backend, 120)
        t_ready = time.time()
        stop.set()
        prober.join()
        if seen:
            delays.append(max(0.0, t_ready - seen[0]))
        t0 = time.monotonic()
        backend.stop()
        teardowns.append(time.monotonic() - t0)
    return delays, teardowns


def crash_detection(image: str, model: Path, logs: Path) -> list[float]:
    delays = []
    for _ in range(REPEATS):
        cmd = ["python", "-c", "import time, sys; time.sleep(2); sys.exit(3)"]
        backend = DockerBackend(tiny_spec(model, free_port(), cmd), logs, image)
        backend.start()
        try:
            wait_ready(backend, 60)
        except ServerExited:
            t_seen = time.time()
        assert backend.container is not None
        backend.container.reload()
        finished = docker_time(backend.container.attrs["State"]["FinishedAt"])
        delays.append(t_seen - finished)
        backend.stop()
    return delays


def run_bench(image: str, model: Path, data: Path, run: Path, pace: str) -> dict[str, float]:
    t_cmd = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench",
         *docker_tiny_args(image, model, run, run.parent / "hf"),
         "--overwrite", "--pace", pace, "--root", str(data)],
        cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )  # fmt: skip
    wall = time.time() - t_cmd
    if proc.returncode != 0:
        raise SystemExit(f"bench failed:\n{proc.stderr[-3000:]}")
    timings = json.loads((run / "manifest.json").read_text())["timings"]
    audio = sum(r["duration_s"] for r in map(json.loads, (run / "samples.jsonl").open()))
    return {
        "wall_s": wall,
        "streaming_s": timings["streaming_s"],
        "audio_s": audio,
        "starting_s": timings["starting_s"],
        # command start -> first session, less the wait for the server to load and the warm-up
        # session (model time); what is left is this tool's own work
        "overhead_s": timings["to_first_session_s"] - timings["starting_s"] - timings["warmup_s"],
        "stopping_s": timings["stopping_s"],
    }


def main() -> None:
    ensure_engine()
    image = ensure_cpu_image()
    model = ensure_tiny_model(REPO_ROOT / ".cache" / "tiny-moshi").resolve()
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        synthesize(data, SynthSpec(tasks=("user_interruption", "background_speech"), per_task=2))
        ready, teardown = readiness_and_teardown(image, model, root / "logs")
        crash = crash_detection(image, model, root / "logs")
        unpaced = run_bench(image, model, data, root / "none", "none")
        paced = run_bench(image, model, data, root / "realtime", "realtime")

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} s (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})"

    table = Table("measure", "result", "goal")
    table.add_row("readiness seen after the port answers", fmt(ready), "< 0.5 s")
    table.add_row("crash seen after the process exits", fmt(crash), "< 1 s")
    table.add_row("teardown (stop + save log + remove)", fmt(teardown), "< 10 s")
    table.add_row(
        "orchestration overhead (to first session - server start-up - warm-up)",
        f"{unpaced['overhead_s']:.2f} s (server start-up wait {unpaced['starting_s']:.2f} s)",
        "small",
    )
    table.add_row("bench teardown inside a run", f"{unpaced['stopping_s']:.2f} s", "< 10 s")
    table.add_row(
        "streaming, --pace none",
        f"{unpaced['streaming_s']:.1f} s for {unpaced['audio_s']:.1f} s of audio",
        "server-bound",
    )
    table.add_row(
        "streaming, --pace realtime",
        f"{paced['streaming_s']:.1f} s for {paced['audio_s']:.1f} s of audio",
        ">= audio length",
    )
    table.add_row(
        "ratio realtime / none (streaming)",
        f"{paced['streaming_s'] / unpaced['streaming_s']:.2f}x",
        "",
    )
    console.print(table)


if __name__ == "__main__":
    main()

"""The command line's options: parsing only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import (
    ENCODERS,
    PACES,
    PROFILES,
    RUNTIMES,
)
from pipeline.dataset.discovery import KNOWN_TASKS

S = argparse.SUPPRESS  # an option not given stays absent, so the TOML file and defaults can apply


def _text_prompt_pair(text: str) -> tuple[str, str]:
    task, sep, prompt = text.partition("=")
    if not sep or not task:
        raise argparse.ArgumentTypeError("use TASK=PROMPT, e.g. user_interruption='You are ...'")
    return task, prompt


def add_client_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `infer` and `bench`: the dataset, the session and the run records."""
    g = p.add_argument_group("dataset")
    g.add_argument("--root", type=Path, default=S, help="dataset root holding the task folders")
    g.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=S,
        metavar="TASK",
        help=f"task folder (repeatable; default: every known one present): "
        f"{', '.join(KNOWN_TASKS)}",
    )
    g.add_argument(
        "--prefix",
        choices=["", "clean_"],
        default=S,
        help="'' reads input.wav/writes output.wav; 'clean_' the clean_ pair",
    )
    g.add_argument(
        "--overwrite", action="store_true", default=S, help="redo samples that are already complete"
    )
    g = p.add_argument_group("session")
    g.add_argument(
        "--profile",
        choices=PROFILES,
        default=S,
        help="server flavour: personaplex (N->N frames, prompts) or moshi (N->N-1)",
    )
    g.add_argument(
        "--voice-prompt",
        "--voice",
        dest="voice_prompt",
        default=S,
        help="PersonaPlex voice prompt (default NATF2.pt)",
    )
    g.add_argument(
        "--text-prompt",
        dest="text_prompt",
        default=S,
        help="PersonaPlex text prompt (default 'You are a helpful and friendly assistant.')",
    )
    g.add_argument(
        "--task-text-prompt",
        dest="text_prompts",
        action="append",
        default=S,
        type=_text_prompt_pair,
        metavar="TASK=PROMPT",
        help="per-task text prompt (repeatable)",
    )
    g.add_argument(
        "--pace",
        choices=PACES,
        default=S,
        help="none: as fast as the server takes; realtime: 80 ms per frame, lag recorded",
    )
    g.add_argument(
        "--encoder",
        choices=ENCODERS,
        default=S,
        help="Opus settings: webclient (audio, complexity 0, as the servers' web"
        " client; default) or sphn (voip, as the reference clients; ~10x CPU)",
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        default=S,
        help="accept a self-signed certificate on wss://",
    )
    g.add_argument(
        "--connect-timeout",
        dest="connect_timeout_s",
        type=float,
        default=S,
        metavar="S",
        help="TCP connect + upgrade timeout (default 30)",
    )
    g.add_argument(
        "--handshake-timeout",
        dest="handshake_timeout_s",
        type=float,
        default=S,
        metavar="S",
        help="wait for the server's 0x00 handshake (default 600)",
    )
    g.add_argument(
        "--stall-timeout",
        dest="stall_timeout_s",
        type=float,
        default=S,
        metavar="S",
        help="fail a sample after this long without a message (default 60)",
    )
    g.add_argument(
        "--connect-retries",
        dest="connect_retries",
        type=int,
        default=S,
        metavar="N",
        help="reconnect tries when refused/closed before handshake (default 5)",
    )
    g.add_argument(
        "--sample-retries",
        dest="sample_retries",
        type=int,
        default=S,
        metavar="N",
        help="new sessions for a sample that failed mid-stream (default 2)",
    )
    g.add_argument(
        "--retry-backoff",
        dest="retry_backoff_s",
        type=float,
        default=S,
        metavar="S",
        help="first reconnect wait, doubling each try (default 1)",
    )
    g = p.add_argument_group("records")
    g.add_argument(
        "--run-dir",
        type=Path,
        default=S,
        help="where manifest.json and samples.jsonl go (default runs/<run id>)",
    )
    g.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="settings file; the command line wins over it, it wins over defaults",
    )
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Benchmark full-duplex speech servers (PersonaPlex, Moshi)"
        " on Full-Duplex-Bench.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    infer = sub.add_parser(
        "infer",
        help="stream every sample to a running server and write outputs beside inputs",
        description="Stream every benchmark sample to a running server; resumable.",
    )
    infer.add_argument(
        "--server",
        "--server-ip",
        "--server_ip",
        dest="server",
        default=S,
        help="host:port, ws://host:port or wss://host:port (default localhost:8998)",
    )
    add_client_options(infer)

    bench = sub.add_parser(
        "bench",
        help="start the server(s), run every sample, tear everything down",
        description="One command: pre-flight, start the model server(s) (Docker, Apptainer or a"
        " local process), wait until ready, warm up, stream the dataset, tear down.",
    )
    add_client_options(bench)
    g = bench.add_argument_group("server")
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=S,
        help="docker (default), apptainer (HPC) or local (a child process)",
    )
    g.add_argument("--image", default=S, help="Docker image (default fdb-server:latest)")
    g.add_argument("--sif", type=Path, default=S, help="Apptainer image file")
    g.add_argument(
        "--port",
        type=int,
        default=S,
        help="host port of the first server, next ones +1 (default 8998; 0: free)",
    )
    g.add_argument(
        "--gpus",
        default=S,
        help="GPUs, one server each: '0' (default), '0,1,2,3', or 'none' for CPU",
    )
    g.add_argument(
        "--startup-timeout",
        dest="startup_timeout_s",
        type=float,
        default=S,
        metavar="S",
        help="wait this long for a server to load (default 1800)",
    )
    g.add_argument(
        "--stop-grace",
        dest="stop_grace_s",
        type=float,
        default=S,
        metavar="S",
        help="SIGTERM, then kill after this long (default 10)",
    )
    g.add_argument(
        "--max-restarts",
        dest="max_restarts",
        type=int,
        default=S,
        metavar="N",
        help="restarts of a server that dies mid-run (default 2)",
    )
    g.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        default=S,
        help="skip the warm-up session",
    )
    g.add_argument(
        "--hf-cache",
        type=Path,
        default=S,
        help="Hugging Face cache folder, mounted into the container (default ~/.cache/huggingface)",
    )
    g.add_argument("--hf-repo", default=S, help="model repository (default: the server's own)")
    g.add_argument(
        "--server-command",
        default=S,
        help="replaces `python -m moshi.server`, e.g. a launcher script",
    )
    g.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=S,
        metavar="ARG",
        help="extra server flag (repeatable), e.g. --server-arg=--half",
    )

    g.add_argument(
        "--mount",
        dest="mounts",
        action="append",
        default=S,
        metavar="HOST:CONTAINER",
        help="extra folder for the container (repeatable)",
    )

    cleanup = sub.add_parser(
        "cleanup",
        help="remove servers a crashed run left behind",
        description="Remove containers and server processes left by crashed runs.",
    )
    cleanup.add_argument("--run-id", default=None, help="only this run (default: every run)")
    cleanup.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    synth = sub.add_parser(
        "synth-data",
        help="write a small synthetic dataset in the v1.5 layout (espeak-ng)",
        description="A small Full-Duplex-Bench-shaped dataset of synthetic speech, for trying"
        " the pipeline out; not the benchmark.",
    )
    synth.add_argument("--out", type=Path, required=True, help="dataset root to create")
    synth.add_argument("--per-task", type=int, default=2, help="samples per task (default 2)")
    synth.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def settings_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The options actually given on the command line, as settings fields."""
    skip = {"command", "config", "verbose"}
    values = {k: v for k, v in vars(ns).items() if k not in skip}
    for name in ("server_args", "mounts"):
        if name in values:
            values[name] = tuple(values[name])
    if "text_prompts" in values:
        values["text_prompts"] = dict(values["text_prompts"])
    return values

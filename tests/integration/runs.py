"""Run the command line as a user would (a subprocess) and read what a run left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from tests.real_server import REPO_ROOT

STARTED: list[subprocess.Popen[str]] = []  # what a failed test must not leave running


def start(command: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m pipeline COMMAND ARGS`, offline for Hugging Face, output captured."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", command, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    STARTED.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def lines(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "samples.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    if not text.endswith("\n"):  # a record being written: not there yet
        text = text[: text.rfind("\n") + 1]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def manifest(run_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return doc


def wait_for(cond: Callable[[], object], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def server_port(run_dir: Path) -> int:
    """The first server's port, from the run's manifest (written when the run starts)."""
    port = urlsplit(manifest(run_dir)["server_urls"][0]).port
    assert port is not None
    return port


def in_session(pid: int, port: int) -> bool:
    """True while process ``pid`` holds an open TCP connection to ``port``: a session (or its
    connect) is under way - observed, not guessed from a sleep."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(
        c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port for c in conns
    )


def wait_in_session(
    proc: subprocess.Popen[str], run_dir: Path, finished: int, timeout: float = 120
) -> int:
    """Wait until at least ``finished`` samples are recorded and the client is inside the next
    sample's session; return how many were recorded then."""
    wait_for(lambda: (run_dir / "manifest.json").exists() and len(lines(run_dir)) >= finished)
    port = server_port(run_dir)
    seen: list[int] = []

    def inside() -> bool:
        before = len(lines(run_dir))
        if in_session(proc.pid, port) and len(lines(run_dir)) == before:
            seen.append(before)  # no sample ended meanwhile: this session is sample `before`
            return True
        return False

    wait_for(inside, timeout)
    return seen[-1]

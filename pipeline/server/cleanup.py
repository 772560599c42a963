"""`cleanup`: remove what a crashed run left behind - containers (by label) and local server
processes (by the run id in their environment) - and say what was removed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

from pipeline.server.base import PreflightError
from pipeline.server.launch import RUN_ID_ENV

log = logging.getLogger("pipeline")


def find_processes(run_id: str | None = None) -> list[tuple[int, str]]:
    """(pid, run id) of live processes started by this tool (Linux /proc)."""
    found = []
    key = f"{RUN_ID_ENV}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(key):
                rid = var[len(key) :].decode(errors="replace")
                if run_id is None or rid == run_id:
                    found.append((int(entry.name), rid))
    return found


def kill_processes(run_id: str | None = None) -> list[str]:
    removed = []
    for pid, rid in find_processes(run_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            removed.append(f"process {pid} (run {rid})")
    return removed


def cleanup(run_id: str | None = None) -> int:
    removed = kill_processes(run_id)
    try:
        from pipeline.server.docker_backend import remove_leftovers

        removed += [f"container {name}" for name in remove_leftovers(run_id)]
    except PreflightError as exc:
        log.info("Docker not reachable, no containers checked (%s)", exc)
    if removed:
        for what in removed:
            log.info("removed %s", what)
        log.info("removed %d leftover(s)", len(removed))
    else:
        log.info("nothing left behind%s", f" by run {run_id}" if run_id else "")
    return 0

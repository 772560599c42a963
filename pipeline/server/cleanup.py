"""`cleanup`: remove what a crashed run left behind - each runtime removes its own leftovers
(containers by label, server processes by the run id in their environment) - and say what was
removed."""

from __future__ import annotations

import logging

from pipeline.server.base import PreflightError
from pipeline.server.local import find_processes
from pipeline.server.runtimes import RUNTIMES

__all__ = ["cleanup", "find_processes"]

log = logging.getLogger("pipeline")


def cleanup(run_id: str | None = None) -> int:
    removed: list[str] = []
    visited: set[type] = set()
    for runtime in RUNTIMES.values():
        owner = next(c for c in runtime.__mro__ if "remove_leftovers" in vars(c))
        if owner in visited:  # Apptainer's leftovers are processes, found as local's are
            continue
        visited.add(owner)
        try:
            removed += runtime.remove_leftovers(run_id)
        except PreflightError as exc:
            log.info("%s: not reachable, nothing checked (%s)", runtime.name, exc)
    if removed:
        for what in removed:
            log.info("removed %s", what)
        log.info("removed %d leftover(s)", len(removed))
    else:
        log.info("nothing left behind%s", f" by run {run_id}" if run_id else "")
    return 0

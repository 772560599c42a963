"""Outputs are written beside each input: a sample folder the run cannot write into is a
pre-flight error, before any server starts or any sample streams.

Permission bits alone do not tell (root passes them, and neither a read-only mount nor an NFS
server that maps root to nobody shows in them): each folder is checked with ``os.access`` and
with a real probe file, created and removed again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pipeline.dataset.discovery import DatasetError, Sample

PROBE_PREFIX = ".fdb-write-probe-"
SHOWN = 3  # folders named in the error; the rest are counted


def write_problem(folder: Path) -> str | None:
    """Why files cannot be created (and removed) in ``folder``; None when they can."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "no write permission" if folder.is_dir() else "not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as exc:  # created but not removable: a run could not replace its outputs
        return f"a file created there cannot be removed ({exc.strerror or exc})"
    return None


def require_writable(samples: Iterable[Sample]) -> None:
    """Raise a DatasetError naming the folders (and the fix) if any sample folder is not
    writable; each folder is probed once."""
    folders = list(dict.fromkeys(s.folder for s in samples))
    bad = [(f, why) for f in folders if (why := write_problem(f)) is not None]
    if not bad:
        return
    named = "; ".join(f"{folder} ({why})" for folder, why in bad[:SHOWN])
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    raise DatasetError(
        f"{len(bad)} of {len(folders)} sample folder(s) are not writable: {named}{more}."
        " The outputs are written beside each input: make the folders writable (chmod u+w, or"
        " mount the dataset read-write), or copy the dataset somewhere writable and pass that"
        " as --root"
    )

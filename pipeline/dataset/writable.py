"""Outputs are written beside each input (or under --output-root): an output folder the run
cannot write into is a pre-flight error, before any server starts or any sample streams.

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


def existing_ancestor(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists (where it would be created)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def write_problem(folder: Path) -> str | None:
    """Why files cannot be created (and removed) in ``folder`` - or, for a folder that does not
    exist yet (under --output-root), in the folder it would be created in; None when they can."""
    made_in = existing_ancestor(folder)
    if made_in != folder:
        why = write_problem(made_in)
        return None if why is None else f"cannot be created in {made_in}: {why}"
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
    """Raise a DatasetError naming the folders (and the fix) if any sample's output folder (its
    own folder, or its folder under --output-root) is not writable; each is probed once."""
    folders = list(dict.fromkeys(s.output_folder for s in samples))
    bad = [(f, why) for f in folders if (why := write_problem(f)) is not None]
    if not bad:
        return
    named = "; ".join(f"{folder} ({why})" for folder, why in bad[:SHOWN])
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    raise DatasetError(
        f"{len(bad)} of {len(folders)} sample output folder(s) are not writable: {named}{more}."
        " Make them writable (chmod u+w, or mount the dataset read-write), or write the outputs"
        " elsewhere with --output-root DIR (the inputs stay read-only)"
    )

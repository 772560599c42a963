"""Atomic writes: outputs and records get the mode the user's umask gives any new file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.results.atomic import atomic_write_bytes, current_umask
from pipeline.results.records import RunRecords


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_readable_by_others_under_a_022_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write_bytes(tmp_path / "output.wav", b"RIFF")
    records = RunRecords(tmp_path / "run", "rid")
    records.start({}, {})
    records.finish("finished")
    # before: mkstemp's 0600, which another user (an evaluation container) cannot read
    assert mode(tmp_path / "output.wav") == 0o644
    assert mode(records.manifest_path) == 0o644
    assert mode(records.samples_path) == 0o644


def test_a_strict_umask_is_respected(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert current_umask() == 0o077
        atomic_write_bytes(tmp_path / "x", b"1")
    finally:
        os.umask(old)
    assert mode(tmp_path / "x") == 0o600

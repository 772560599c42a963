"""A dataset the run cannot write into is a pre-flight error (exit 2) naming the folders and the
fix, before any server is asked for anything - not hundreds of samples streamed, then failed.

Root passes permission bits, so as root the folders are made read-only the way clusters make
them: a read-only bind mount, in a private mount namespace (`unshare -m`) that ends with the
command. As another user, clearing the write bits does it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.dataset.discovery import DatasetError, discover
from pipeline.dataset.writable import PROBE_PREFIX, require_writable, write_problem
from tests.conftest import in_ci

REPO = Path(__file__).resolve().parents[2]
NOBODY_LISTENS = "127.0.0.1:9"  # the discard port: nothing answers here


def read_only_command(folders: list[Path], argv: list[str]) -> list[str]:
    """``argv`` run with ``folders`` read-only for it (and for nothing else)."""
    if os.geteuid() != 0:
        for folder in folders:
            folder.chmod(0o555)
        return argv
    if shutil.which("unshare") is None:
        if in_ci():
            pytest.fail("unshare (util-linux) is missing: CI cannot make a read-only mount")
        pytest.skip("unshare is missing: no read-only mount as root")
    mounts = " && ".join(
        f"mount --bind {shlex.quote(str(f))} {shlex.quote(str(f))}"
        f" && mount -o remount,bind,ro {shlex.quote(str(f))}"
        for f in folders
    )
    return ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *argv]


def infer(
    root: Path, read_only: list[Path], tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pipeline", "infer", "--root", str(root), *extra]
    argv += ["--server", NOBODY_LISTENS, "--run-dir", str(tmp_path / "run")]
    return subprocess.run(
        read_only_command(read_only, argv),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two samples of one task, each a short 16 kHz input."""
    root = tmp_path / "data"
    for sample_id in ("1", "2"):
        folder = root / "user_interruption" / sample_id
        folder.mkdir(parents=True)
        sf.write(folder / "input.wav", np.zeros(1600, dtype=np.float32), 16000)
    return root


def test_a_writable_dataset_passes_and_leaves_no_probe(dataset: Path) -> None:
    samples = discover(dataset)
    require_writable(samples)
    for sample in samples:
        assert write_problem(sample.folder) is None
        assert not [p for p in sample.folder.iterdir() if p.name.startswith(PROBE_PREFIX)]
    not_a_folder = dataset / "file"
    not_a_folder.write_bytes(b"")
    with pytest.raises(DatasetError, match=rf"1 of 2 .* not writable: {not_a_folder} \(not a"):
        require_writable([*samples[:1], type(samples[0])("t", "x", not_a_folder)])


def test_a_read_only_dataset_is_a_preflight_error_naming_it(dataset: Path, tmp_path: Path) -> None:
    result = infer(dataset, [dataset], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "2 of 2 sample output folder(s) are not writable" in result.stderr, result.stderr
    first = dataset / "user_interruption" / "1"
    assert f"{first} (" in result.stderr and "--output-root" in result.stderr
    assert NOBODY_LISTENS not in result.stderr  # stopped before the server was asked
    assert not (tmp_path / "run").exists()  # nothing ran, nothing recorded


def test_one_read_only_sample_folder_is_named(dataset: Path, tmp_path: Path) -> None:
    locked = dataset / "user_interruption" / "2"
    result = infer(dataset, [locked], tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"1 of 2 sample output folder(s) are not writable: {locked} (" in result.stderr


def test_a_read_only_dataset_with_an_output_root_is_fine(dataset: Path, tmp_path: Path) -> None:
    """--output-root keeps the inputs read-only: its folders are what must be writable."""
    out = tmp_path / "out"
    result = infer(dataset, [dataset], tmp_path, "--output-root", str(out))
    assert "not writable" not in result.stderr
    assert NOBODY_LISTENS in result.stderr  # past the dataset checks: the server is asked
    locked = tmp_path / "locked"
    locked.mkdir()
    result = infer(dataset, [dataset, locked], tmp_path, "--output-root", str(locked / "out"))
    assert result.returncode == 2, result.stderr
    assert "2 of 2 sample output folder(s) are not writable" in result.stderr
    assert f"cannot be created in {locked}" in result.stderr

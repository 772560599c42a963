"""Helpers for tests that use a REAL Apptainer and the CPU variant of apptainer.def.

Not a test module. Nothing is faked and no registry is needed:

- `ensure_apptainer()`: the system's apptainer/singularity, else the Debian sid one that
  `scripts/apptainer-setup.sh` prepares (its bin folder is appended to PATH, for this process
  and every `python -m pipeline` it starts).
- `ensure_cpu_sif()`: `scripts/build-cpu-sif.sh` (idempotent: rebuilt only when an input
  changed, so once per CI run), the tiny PersonaPlex server (or upstream moshi) inside.

In CI a missing piece raises; locally the test is skipped with the command that prepares it.
A failing build always raises: that is a bug in the recipe.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.docker_support import _run_logged, _tail, unavailable
from tests.real_server import REPO_ROOT

SETUP_SCRIPT = REPO_ROOT / "scripts" / "apptainer-setup.sh"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-cpu-sif.sh"
SETUP_TIMEOUT_S = 900.0
BUILD_TIMEOUT_S = 1800.0

_sifs: dict[str, Path] = {}


def ensure_apptainer() -> str:
    """The path of a working `apptainer` (or `singularity`), on PATH from now on."""
    found = shutil.which("apptainer") or shutil.which("singularity")
    if found:
        return found
    code, log_path = _run_logged(
        ["bash", str(SETUP_SCRIPT)], "apptainer-setup.log", SETUP_TIMEOUT_S
    )
    if code != 0:
        unavailable(
            f"no Apptainer: apptainer-setup.sh failed (exit {code}); log {log_path}:\n"
            f"{_tail(log_path)}",
            f"sudo bash {SETUP_SCRIPT.relative_to(REPO_ROOT)}",
        )
    bin_dir = subprocess.run(
        ["bash", str(SETUP_SCRIPT), "--bin"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if bin_dir:
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}{bin_dir}"
    found = shutil.which("apptainer") or shutil.which("singularity")
    assert found, f"apptainer-setup.sh succeeded but no apptainer in {bin_dir}"
    return found


def ensure_cpu_sif(profile: str = "personaplex") -> Path:
    """The CPU SIF of `profile` (`make sif-cpu PROFILE=...`), built offline if out of date."""
    if profile in _sifs:
        return _sifs[profile]
    ensure_apptainer()
    code, log_path = _run_logged(
        ["bash", str(BUILD_SCRIPT), "", profile], f"cpu-sif-{profile}.log", BUILD_TIMEOUT_S
    )
    sif = REPO_ROOT / ".cache" / "apptainer" / f"cpu-{profile}.sif"
    if code != 0 or not sif.is_file():
        raise RuntimeError(
            f"build-cpu-sif.sh {profile} failed (exit {code}); log {log_path}:\n{_tail(log_path)}"
        )
    _sifs[profile] = sif
    return sif

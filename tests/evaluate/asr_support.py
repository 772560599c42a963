"""The ASR stage's real environment for the tests: `.venv-asr` (`make asr-env`) and the tiny
random FastConformer-TDT built with it, once per version of its script, under
`.cache/tiny-asr/` (the same path as `make tiny-asr`). Missing `.venv-asr` skips on a
workstation and fails in CI (tests/conftest.py turns a skip there into a failure)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from pipeline.evaluate.asr_client import asr_requirement, default_python

REPO = Path(__file__).resolve().parents[2]
MAKER = REPO / "containers" / "tiny_asr" / "make_tiny_asr.py"


def require_asr_python() -> Path:
    python = default_python()
    need = asr_requirement(python, "x.nemo", explicit=True)
    if need is not None and "ASR venv" in need:
        pytest.skip(need)
    return python


def tiny_asr_model() -> Path:
    """The tiny model's .nemo file, built here if this version of the script has not been."""
    python = require_asr_python()
    digest = hashlib.sha256(MAKER.read_bytes()).hexdigest()[:12]
    path = REPO / ".cache" / "tiny-asr" / digest / "tiny-asr.nemo"
    if not path.is_file():
        subprocess.run([str(python), str(MAKER), str(path)], check=True, timeout=600)
    return path

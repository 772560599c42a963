"""The pinned silero VAD model for the tests: `make eval-models` puts it in place; a missing one
skips on a workstation and fails in CI (tests/conftest.py turns a skip there into a failure)."""

from __future__ import annotations

import pytest

from pipeline.evaluate.vad_model import FETCH_HINT, VadModelError, model_bytes


def require_vad_model() -> None:
    try:
        model_bytes()
    except VadModelError as exc:
        pytest.skip(f"{exc} ({FETCH_HINT})")

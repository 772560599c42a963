"""Fixtures for tests against real external components (here: the real upstream moshi server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_server import (
    REPO_ROOT,
    SERVER_PYTHON_ENV,
    SETUP_COMMAND,
    RunningServer,
    ensure_tiny_model,
    server_python,
    server_python_available,
    tiny_moshi_server,
)

TINY_MODEL_CACHE = REPO_ROOT / ".cache" / "tiny-moshi"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Random tiny Moshi model (generated once, cached under <repo>/.cache/tiny-moshi)."""
    if not server_python_available():
        message = (
            f"the moshi server venv is missing ({server_python()} not found); "
            f"create it with `{SETUP_COMMAND}` or set {SERVER_PYTHON_ENV}"
        )
        if _in_ci():
            pytest.fail(message + " (CI must not skip the integration tests)")
        pytest.skip(message)
    return ensure_tiny_model(TINY_MODEL_CACHE)


@pytest.fixture(scope="module")
def moshi_server(tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The real `moshi.server` (0.2.13) on the tiny model, one process per test module."""
    with tiny_moshi_server(tiny_model_dir) as server:
        yield server

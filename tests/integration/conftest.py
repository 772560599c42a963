"""Fixtures for tests against real external components (here: the real upstream moshi server)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.dataset.synthesize import SynthSpec, synthesize
from tests.conftest import in_ci
from tests.real_server import (
    PERSONAPLEX_PYTHON_ENV,
    PERSONAPLEX_SETUP_COMMAND,
    REPO_ROOT,
    SERVER_PYTHON_ENV,
    SETUP_COMMAND,
    RunningServer,
    ensure_tiny_model,
    ensure_tiny_personaplex,
    personaplex_available,
    personaplex_python,
    server_python,
    server_python_available,
    tiny_moshi_server,
    tiny_personaplex_server,
)

TINY_MODEL_CACHE = REPO_ROOT / ".cache" / "tiny-moshi"


def require_server_venv(what: str, available: bool, python: Path, setup: str, env: str) -> None:
    """A missing server venv skips the test on a workstation and fails it in CI."""
    if available:
        return
    message = (
        f"the {what} server venv is missing ({python} not found); create it with `{setup}`"
        f" or set {env}"
    )
    if in_ci():
        pytest.fail(message + " (CI must not skip the integration tests)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """Random tiny Moshi model (generated once, cached under <repo>/.cache/tiny-moshi)."""
    require_server_venv(
        "moshi", server_python_available(), server_python(), SETUP_COMMAND, SERVER_PYTHON_ENV
    )
    return ensure_tiny_model(TINY_MODEL_CACHE)


@pytest.fixture(scope="module")
def moshi_server(tiny_model_dir: Path) -> Iterator[RunningServer]:
    """The real `moshi.server` (0.2.13) on the tiny model, one process per test module."""
    with tiny_moshi_server(tiny_model_dir) as server:
        yield server


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four short synthetic samples in two v1.5 tasks (a module may define its own)."""
    root = tmp_path_factory.mktemp("fdb") / "v1.5"
    synthesize(
        root,
        SynthSpec(
            tasks=("user_interruption", "background_speech"), per_task=2, seconds_trailing=0.5
        ),
    )
    return root


@pytest.fixture(scope="session")
def personaplex_model_dir() -> Path:
    """NVIDIA's PersonaPlex server venv and a tiny random model for it (made once, cached)."""
    require_server_venv(
        "PersonaPlex",
        personaplex_available(),
        personaplex_python(),
        PERSONAPLEX_SETUP_COMMAND,
        PERSONAPLEX_PYTHON_ENV,
    )
    return ensure_tiny_personaplex(REPO_ROOT / ".cache" / "tiny-personaplex")


@pytest.fixture(scope="module")
def personaplex_server(
    personaplex_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The real PersonaPlex server on the tiny model, one process per test module."""
    with tiny_personaplex_server(personaplex_model_dir, tmp_path_factory.mktemp("pp")) as server:
        yield server


@pytest.fixture(autouse=True)
def no_run_left_behind() -> Iterator[None]:
    """A test that fails mid-run must not leave its `pipeline` subprocess (and so its server)
    running into the next test: SIGTERM it, which tears its servers down, then kill."""
    from tests.integration.runs import STARTED

    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()

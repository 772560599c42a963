"""Every dependency declares a floor, so that `make test-floors` (uv's lowest-direct resolution,
then scripts/check_floors.py, the unit tests and the lint) tests the versions a user may get."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_floors.py"


def check_floors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_floors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_dependency_declares_a_floor() -> None:
    module = check_floors()
    assert module.problems(check_installed=False) == []
    names = {r.name for r in module.requirements()}
    assert {"websockets", "numpy", "pytest", "ruff"} <= names  # both lists are read


def test_a_missing_floor_and_a_lifted_floor_are_reported(tmp_path: Path) -> None:
    module = check_floors()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["websockets>=14,<18", "numpy"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=1.0"]\n'
    )
    module.PYPROJECT = pyproject
    found = module.problems(check_installed=True)
    assert found[0].startswith("websockets: the floor is 14 but ")  # this venv has a newer one
    assert found[1] == "numpy: no floor (>=) in pyproject.toml"
    assert found[2].startswith("pytest: the floor is 1.0 but ")
    assert len(found) == 3

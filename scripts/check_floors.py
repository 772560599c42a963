#!/usr/bin/env python3
"""Check the dependency floors of pyproject.toml.

    python scripts/check_floors.py            every direct dependency (and those of each extra)
                                              declares a floor (>=), and this environment
                                              holds exactly that version of each
    python scripts/check_floors.py --declared only the first part (no environment needed)

`make test-floors` builds an environment with the lowest allowed versions (uv's lowest-direct
resolution) and runs this before the tests: a floor that another dependency lifts (a
requirement of its own) would otherwise pass untested.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements() -> list[Requirement]:
    """The direct dependencies and those of every extra (`make test-floors` installs them all)."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def floor(req: Requirement) -> Version | None:
    """The version a `>=` specifier names (None: no floor)."""
    floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(floors) if floors else None


def problems(check_installed: bool) -> list[str]:
    found = []
    for req in requirements():
        low = floor(req)
        if low is None:
            found.append(f"{req.name}: no floor (>=) in {PYPROJECT.name}")
            continue
        if not check_installed:
            continue
        try:
            have = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            found.append(f"{req.name}: not installed")
            continue
        if have != low:
            found.append(
                f"{req.name}: the floor is {low} but {have} is installed (another dependency"
                f" needs it?): raise the floor to {have}, or find what lifts it"
            )
    return found


def main(argv: list[str]) -> int:
    found = problems(check_installed="--declared" not in argv)
    for line in found:
        print(f"check_floors: {line}", file=sys.stderr)
    if not found:
        print(f"check_floors: {len(requirements())} floors OK")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

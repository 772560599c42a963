"""CI never skips: a test that would be skipped there fails instead (a missing Docker engine or
server venv is a broken CI, not a reason to pass)."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
    return None


def _zero_counts() -> dict[str, int]:
    from pathlib import Path

    from pipeline.results.records import RunRecords

    return RunRecords(Path("unused"), "unused").count_table()


ZERO_COUNTS = _zero_counts()  # every status and note of a run's count table, at 0

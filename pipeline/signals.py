"""SIGINT (Ctrl-C) and SIGTERM (Slurm's scancel, docker stop) become one exception, so every
``finally`` runs and the servers are torn down; teardown itself is shielded from a second signal.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

HANDLED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    # a BaseException, like KeyboardInterrupt: `except Exception` must not swallow it
    """The run was stopped by a signal; ``exit_code`` is 128 + its number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted`."""
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Within the block, signals are noted (in the yielded list) but do not interrupt."""
    got: list[int] = []
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in HANDLED}

    def note(signum: int, _frame: FrameType | None) -> None:
        got.append(signum)

    for s in HANDLED:
        signal.signal(s, note)
    try:
        yield got
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

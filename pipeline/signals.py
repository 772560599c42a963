"""The one signal policy of a run.

SIGINT (Ctrl-C), SIGTERM (Slurm's ``scancel``, ``docker stop``) and SIGHUP (a dropped SSH
session) all stop a run the same way: they become :class:`Interrupted`, so every ``finally``
runs and the servers are torn down. In synchronous code the handler raises it; inside the event
loop :func:`cancel_on_signal` cancels the running coroutine and raises it once the coroutine has
unwound. Teardown runs under :func:`deferred`, which notes a second signal instead of obeying it.

A SIGHUP that was ignored when the process started (``nohup``) stays ignored: the user asked for
the run to outlive the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")
STOPPING: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    # a BaseException, like KeyboardInterrupt: `except Exception` must not swallow it
    """The run was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports it (130, 143, 129)."""
        return 128 + self.signum


def handled() -> list[signal.Signals]:
    """The signals this policy takes over now (SIGHUP only where it is not ignored)."""
    return [s for s in STOPPING if signal.getsignal(s) is not signal.SIG_IGN]


@contextlib.contextmanager
def _handlers(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    previous: dict[signal.Signals, Any] = {s: signal.getsignal(s) for s in handled()}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, a stopping signal raises :class:`Interrupted`."""
    with _handlers(_raise):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[list[int]]:
    """Within the block, stopping signals are noted (in the yielded list) but do not interrupt."""
    got: list[int] = []
    with _handlers(lambda signum, _frame: got.append(signum)):
        yield got


async def cancel_on_signal(work: Awaitable[T]) -> T:
    """Await ``work``; a stopping signal cancels it, and :class:`Interrupted` is raised once it
    has unwound (its ``finally`` blocks and the sessions' closes have run)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    got: list[int] = []

    def on_signal(signum: int) -> None:
        if not got:
            got.append(signum)
            task.cancel()

    previous = {s: signal.getsignal(s) for s in handled()}
    for s in previous:
        loop.add_signal_handler(s, on_signal, s)
    try:
        return await task
    except asyncio.CancelledError:
        if not got:
            raise
        raise Interrupted(got[0]) from None
    finally:
        for s, old in previous.items():
            loop.remove_signal_handler(s)
            signal.signal(s, old)  # asyncio leaves the default behind: put the previous back

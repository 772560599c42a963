"""The one signal policy: SIGINT, SIGTERM and SIGHUP stop a run the same way, in plain code and
inside the event loop; teardown defers them; a SIGHUP ignored by nohup stays ignored."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from pipeline import signals


@pytest.fixture(autouse=True)
def restore_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in signals.STOPPING}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_each_stopping_signal_raises_interrupted_with_its_exit_code(
    sig: signal.Signals, code: int
) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(signals.Interrupted) as info, signals.interruptible():
        os.kill(os.getpid(), sig)
    assert info.value.exit_code == code and info.value.name == sig.name
    assert signal.getsignal(sig) is before  # the previous handler is back


def test_nohup_keeps_sighup_ignored() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    assert signal.SIGHUP not in signals.handled()
    with signals.interruptible():
        os.kill(os.getpid(), signal.SIGHUP)  # nothing happens: the user asked for nohup
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_deferred_notes_signals_without_interrupting() -> None:
    with signals.interruptible():
        with signals.deferred() as got:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            finished = True
        assert got == [signal.SIGTERM, signal.SIGINT] and finished


def test_cancel_on_signal_unwinds_the_work_then_raises() -> None:
    unwound: list[str] = []

    async def work() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("finally ran")

    with signals.interruptible():
        with pytest.raises(signals.Interrupted) as info:
            asyncio.run(signals.cancel_on_signal(work()))
        # the loop's handlers are gone: the raising handler of the block is back
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert info.value.signum == signal.SIGTERM and unwound == ["finally ran"]


def test_cancel_on_signal_returns_the_result_when_no_signal_comes() -> None:
    async def work() -> int:
        return 7

    assert asyncio.run(signals.cancel_on_signal(work())) == 7

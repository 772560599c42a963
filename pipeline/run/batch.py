"""Spread a batch of samples over server slots: one worker per server pulls from one queue, so
each server has one session at a time. A sample is recorded once, and never dropped: the sample
of a server that is gone for good goes back to the queue for the others, and what no server is
left to run is recorded as failed."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from pipeline.dataset.discovery import Sample
from pipeline.results.records import SampleRecord
from pipeline.run.sample import SampleRunner
from pipeline.run.slots import ServerGone, ServerSlot

log = logging.getLogger("pipeline")
NO_SERVER_LEFT = "no server left to run it (see the server logs)"


class WorkQueue:
    """Samples waiting for a server. A worker that finds it empty waits while other samples are
    still being run: a dying server may yet hand its sample back."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._todo: deque[Sample] = deque(samples)
        self._in_flight = 0
        self._changed = asyncio.Condition()

    async def take(self) -> Sample | None:
        """The next sample, or None once nothing is left to do or to come back."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._todo) or self._in_flight == 0)
            if not self._todo:
                return None
            self._in_flight += 1
            return self._todo.popleft()

    async def done(self, sample: Sample, *, hand_back: bool = False) -> None:
        async with self._changed:
            self._in_flight -= 1
            if hand_back:
                self._todo.appendleft(sample)
            self._changed.notify_all()

    def rest(self) -> list[Sample]:
        """What is still queued (every worker has stopped)."""
        rest = list(self._todo)
        self._todo.clear()
        return rest


async def run_batch(
    samples: Sequence[Sample],
    slots: Sequence[ServerSlot],
    runner: SampleRunner,
    on_record: Callable[[SampleRecord], None],
) -> None:
    """Run every sample on some slot; ``on_record`` gets each sample's record once."""
    queue = WorkQueue(samples)

    async def worker(slot: ServerSlot) -> None:
        while (sample := await queue.take()) is not None:
            try:
                rec = await runner.run(sample, slot)
            except ServerGone as exc:  # not the sample's fault: hand it on
                log.error("%s is gone (%s); the others carry on", slot.name, exc)
                await queue.done(sample, hand_back=True)
                return
            await queue.done(sample)
            on_record(rec)

    await asyncio.gather(*(worker(slot) for slot in slots))
    for sample in queue.rest():  # every server is gone: the rest is failed, never dropped
        on_record(SampleRecord.of(sample).fail("no_server", NO_SERVER_LEFT))

"""Run a planned batch: one worker per server, each on its own list of samples (plan.py), one
session at a time. A sample is recorded once and never dropped: a server gone for good hands
its remaining samples on to the others (in a deterministic order), and what no server is left
to run, or what a stopped run never reached, is recorded as not run.

The breaker: when consecutive samples on one server fail with the same kind of error, the
server is not sent more of them - a server this tool started is restarted (within
--max-restarts; past that it is gone), a server somebody else runs stops the run. A profile
mismatch stops the run at once: no sample can succeed with the wrong profile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from pipeline.config import flag_for
from pipeline.dataset.discovery import Sample
from pipeline.results.records import ErrorKind, SampleRecord
from pipeline.run.plan import hand_on
from pipeline.run.sample import SampleRunner
from pipeline.run.slots import ServerGone, ServerSlot

log = logging.getLogger("pipeline")
NO_SERVER_LEFT = "no server left to run it (see the server logs)"
# A bad input is that input's fault, never the server's: it neither trips nor resets the breaker
NOT_THE_SERVERS_FAULT: tuple[ErrorKind, ...] = ("input",)
# Failures that no server restart can mend: the breaker stops the run instead
RUN_WIDE: tuple[ErrorKind, ...] = ("write",)


class Lanes:
    """Each server's own queue. A worker whose queue is empty waits while another server still
    works: that server may yet die and hand samples on."""

    def __init__(self, plan: Sequence[Sequence[Sample]]) -> None:
        self.queues: list[deque[Sample]] = [deque(lane) for lane in plan]
        self.alive = [True] * len(plan)
        self.busy = [False] * len(plan)
        self.orphans: list[Sample] = []  # handed on with no server left
        self.stopped: str | None = None
        self._changed = asyncio.Condition()

    def _others_working(self, k: int) -> bool:
        return any(
            self.alive[j] and (self.busy[j] or bool(self.queues[j]))
            for j in range(len(self.queues))
            if j != k
        )

    async def take(self, k: int) -> Sample | None:
        """Server ``k``'s next sample, or None: the run stopped, or nothing is left for it."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: (
                    self.stopped is not None or bool(self.queues[k]) or not self._others_working(k)
                )
            )
            if self.stopped is not None or not self.queues[k]:
                return None
            self.busy[k] = True
            return self.queues[k].popleft()

    async def done(self, k: int) -> None:
        async with self._changed:
            self.busy[k] = False
            self._changed.notify_all()

    async def gone(self, k: int, current: Sample | None) -> None:
        """Server ``k`` is gone for good: its sample in hand, then its queue, handed on."""
        async with self._changed:
            self.alive[k], self.busy[k] = False, False
            rest = ([current] if current is not None else []) + list(self.queues[k])
            self.queues[k].clear()
            survivors = [j for j, up in enumerate(self.alive) if up]
            if survivors:
                for j, extra in hand_on(rest, survivors).items():
                    self.queues[j].extend(extra)
            else:
                self.orphans.extend(rest)
            self._changed.notify_all()

    async def stop(self, reason: str) -> None:
        async with self._changed:
            if self.stopped is None:
                self.stopped = reason
            self._changed.notify_all()

    def leftovers(self) -> list[Sample]:
        """What no worker ran (every worker has returned), in a deterministic order."""
        rest = list(self.orphans)
        for queue in self.queues:
            rest.extend(queue)
            queue.clear()
        return rest


class Breaker:
    """Counts one server's consecutive failures of one kind."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kind: ErrorKind | None = None
        self.count = 0

    def reset(self) -> None:
        self.kind, self.count = None, 0

    def trips(self, rec: SampleRecord) -> bool:
        if rec.status in ("ok", "skipped"):
            self.reset()
            return False
        if rec.status != "failed" or rec.error_kind in NOT_THE_SERVERS_FAULT:
            return False
        if rec.error_kind == self.kind:
            self.count += 1
        else:
            self.kind, self.count = rec.error_kind, 1
        return 0 < self.limit <= self.count


async def run_batch(
    plan: Sequence[Sequence[Sample]],
    slots: Sequence[ServerSlot],
    runner: SampleRunner,
    on_record: Callable[[SampleRecord], None],
    breaker_limit: int = 0,
) -> str | None:
    """Run each slot's planned samples; ``on_record`` gets each sample's record once. Returns
    why the run stopped early (None: it ran everything it could)."""
    lanes = Lanes(plan)

    async def worker(k: int, slot: ServerSlot) -> None:
        breaker = Breaker(breaker_limit)
        while (sample := await lanes.take(k)) is not None:
            try:
                rec = await runner.run(sample, slot)
            except ServerGone as exc:  # not the sample's fault: hand it on
                log.error("%s is gone (%s); its samples go to the others", slot.name, exc)
                await lanes.gone(k, sample)
                return
            await lanes.done(k)
            on_record(rec)
            if rec.error_kind == "profile_mismatch":
                await lanes.stop(f"{rec.key}: {rec.error}")
                return
            if breaker.trips(rec) and not await _on_trip(k, slot, breaker, rec, lanes):
                return

    await asyncio.gather(*(worker(k, slot) for k, slot in enumerate(slots)))
    why = lanes.stopped or NO_SERVER_LEFT
    for sample in lanes.leftovers():
        on_record(SampleRecord.of(sample).not_run(why))
    return lanes.stopped or (NO_SERVER_LEFT if not any(lanes.alive) else None)


async def _on_trip(
    k: int, slot: ServerSlot, breaker: Breaker, rec: SampleRecord, lanes: Lanes
) -> bool:
    """The breaker tripped on ``slot``: restart the server (True: carry on), or stop sending it
    samples (False: the worker ends)."""
    why = f"{breaker.count} samples in a row failed on {slot.name} with {breaker.kind}"
    if slot.force_restart is None or breaker.kind in RUN_WIDE:
        await lanes.stop(
            f"{why} (last: {rec.error}); stopped sending samples"
            f" ({flag_for('breaker')} {breaker.limit}; 0 turns the breaker off)"
        )
        return False
    try:
        await slot.force_restart(why)
    except ServerGone as exc:
        log.error("%s is gone (%s); its samples go to the others", slot.name, exc)
        await lanes.gone(k, None)
        return False
    breaker.reset()
    return True

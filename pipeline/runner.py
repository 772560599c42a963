"""Run a batch: every sample through a server session, outputs beside the inputs, records in the
run dir. One worker per server pulls from one queue, so each server has one session at a time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.config import InferSettings
from pipeline.dataset.audio import (
    FRAME_SECONDS,
    InputAudio,
    InputAudioError,
    file_sha256,
    load_input,
)
from pipeline.dataset.discovery import Sample
from pipeline.results.outputs import (
    align_output,
    is_complete,
    remove_leftovers,
    set_aside_stale,
    write_outputs,
)
from pipeline.results.records import RunRecords
from pipeline.signals import HANDLED
from pipeline.stream.protocol import PROFILE_SPECS, normalize_server, session_url
from pipeline.stream.session import (
    ConnectError,
    SessionError,
    SessionResult,
    Timeouts,
    run_session,
)

log = logging.getLogger("pipeline")


@dataclass
class ServerSlot:
    """One server process the client talks to; counts the sessions it has served us."""

    url: str
    name: str = "server0"
    sessions: int = 0
    # called before every session: restarts a dead server, or raises ServerGone
    ensure_ready: Callable[[], Awaitable[None]] | None = None


class ServerGone(SessionError):
    """The server died and may not be restarted again: its worker stops, the others go on."""

    kind = "server_gone"


@dataclass
class BatchOutcome:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (sample key, reason)
    interrupted_by: int | None = None  # signal number

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        return 1 if self.counts["failed"] else 0


def _lag_fields(result: SessionResult) -> dict[str, float] | None:
    lag = result.lag
    if lag is None:
        return None
    return {
        "p50_s": round(lag.p50_s, 4),
        "p95_s": round(lag.p95_s, 4),
        "max_s": round(lag.max_s, 4),
    }


class SampleRunner:
    """Processes one sample on one server: skip, load, stream with retries, write, record."""

    def __init__(self, settings: InferSettings, records: RunRecords) -> None:
        self.settings = settings
        self.records = records
        self.spec = PROFILE_SPECS[settings.profile]
        self.timeouts = Timeouts.of(settings)

    async def _session(
        self,
        slot: ServerSlot,
        sample: Sample,
        audio: InputAudio,
        attempts: list[dict[str, Any]],
        state: dict[str, Any],
    ) -> SessionResult:
        s = self.settings
        url = session_url(slot.url, s.profile, s.voice_prompt, s.text_prompt_for(sample.task))

        def note(stage: str) -> Callable[[RetryCallState], None]:
            def record(rs: RetryCallState) -> None:
                exc = rs.outcome.exception() if rs.outcome else None
                kind = getattr(exc, "kind", type(exc).__name__)
                attempts.append(
                    {
                        "stage": stage,
                        "attempt": rs.attempt_number,
                        "error_kind": kind,
                        "error": str(exc),
                    }
                )
                log.warning(
                    "%s: %s attempt %d failed (%s); retrying",
                    sample.key,
                    stage,
                    rs.attempt_number,
                    exc,
                )

            return record

        def handshake() -> None:
            state["session_index"] = slot.sessions
            slot.sessions += 1

        async def connect_and_stream() -> SessionResult:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(s.connect_retries + 1),
                wait=wait_exponential(multiplier=s.retry_backoff_s, max=30),
                retry=retry_if_exception_type(ConnectError),
                before_sleep=note("connect"),
                reraise=True,
            ):
                with attempt:
                    if slot.ensure_ready is not None:
                        await slot.ensure_ready()
                    return await run_session(
                        url,
                        audio.frames(),
                        self.spec,
                        realtime=s.pace == "realtime",
                        encoder=s.encoder,
                        timeouts=self.timeouts,
                        insecure=s.insecure,
                        on_handshake=handshake,
                    )
            raise AssertionError("unreachable")  # pragma: no cover

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(s.sample_retries + 1),
            retry=retry_if_exception(
                lambda e: (
                    isinstance(e, SessionError) and not isinstance(e, ConnectError | ServerGone)
                )
            ),
            before_sleep=note("session"),
            reraise=True,
        ):
            with attempt:
                return await connect_and_stream()
        raise AssertionError("unreachable")  # pragma: no cover

    def failed_record(
        self, sample: Sample, error: str | None, server: str | None = None
    ) -> dict[str, Any]:
        """A sample's record, as failed until proven otherwise."""
        return {
            "task": sample.task,
            "id": sample.sample_id,
            "input": str(sample.input_path),
            "status": "failed",
            "error": error,
            "error_kind": None if error is None else "no_server",
            "duration_s": None,
            "frames_sent": 0,
            "frames_received": 0,
            "frames_expected": None,
            "wall_s": None,
            "lag": None,
            "session_index": None,
            "server": server,
            "attempts": [],
        }

    async def run(self, sample: Sample, slot: ServerSlot) -> dict[str, Any]:
        t0 = time.perf_counter()
        rec = self.failed_record(sample, None, slot.name)
        removed = remove_leftovers(sample)
        if removed:
            log.info("%s: removed %d leftover temporary file(s)", sample.key, len(removed))
        try:
            complete = sample.input_path.is_file() and is_complete(
                sample, file_sha256(sample.input_path)
            )
            if complete and not self.settings.overwrite:
                rec.update(status="skipped", wall_s=round(time.perf_counter() - t0, 3))
                return rec
            if not complete:  # a partial, stale or foreign output must not be scored
                moved = set_aside_stale(sample)
                if moved is not None:
                    log.warning(
                        "%s: moved an incomplete or stale output to %s", sample.key, moved.name
                    )
            audio = load_input(sample.input_path)
            rec["duration_s"] = round(audio.duration_s, 3)
            rec["frames_expected"] = self.spec.expected_output_frames(audio.n_frames)
            state: dict[str, Any] = {}
            try:
                result = await self._session(slot, sample, audio, rec["attempts"], state)
            finally:
                rec["session_index"] = state.get("session_index")
            rec.update(
                frames_sent=result.frames_sent,
                frames_received=result.frames_received,
                lag=_lag_fields(result),
                handshake_s=round(result.handshake_s, 3),
                stream_s=round(result.stream_s, 3),
                realtime_factor=round(result.stream_s / audio.duration_s, 3),
            )
            aligned = align_output(result.audio, audio.length)
            write_outputs(
                sample,
                aligned,
                result.pieces,
                {
                    "run_id": self.records.run_id,
                    "input_sha256": audio.sha256,
                    "profile": self.settings.profile,
                    "server": slot.url,
                    "voice_prompt": self.settings.voice_prompt if self.spec.sends_prompts else None,
                    "text_prompt": self.settings.text_prompt_for(sample.task)
                    if self.spec.sends_prompts
                    else None,
                    "session_index": rec["session_index"],
                    "frames_sent": result.frames_sent,
                    "frames_received": result.frames_received,
                    "frame_seconds": FRAME_SECONDS,
                },
            )
            rec["status"] = "ok"
        except InputAudioError as exc:
            rec.update(error=str(exc), error_kind="input")
        except SessionError as exc:
            rec.update(
                error=exc.reason,
                error_kind=exc.kind,
                frames_sent=exc.frames_sent,
                frames_received=exc.frames_received,
            )
        except OSError as exc:  # writing outputs: disk full, permissions
            rec.update(error=f"cannot write outputs in {sample.folder}: {exc}", error_kind="write")
        rec["wall_s"] = round(time.perf_counter() - t0, 3)
        return rec


async def run_batch(
    samples: Sequence[Sample],
    slots: Sequence[ServerSlot],
    runner: SampleRunner,
    outcome: BatchOutcome,
    console: Console | None = None,
) -> BatchOutcome:
    """Spread the samples over the servers through one queue; record each result as it comes."""
    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for sample in samples:
        queue.put_nowait(sample)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )

    def counts_text() -> str:
        c = outcome.counts
        return f"[green]ok {c['ok']}[/] [red]failed {c['failed']}[/] skipped {c['skipped']}"

    in_flight = 0  # samples being run: a worker waits for them before it may stop

    async def worker(slot: ServerSlot, bar: Any) -> None:
        nonlocal in_flight
        while True:
            try:
                sample = queue.get_nowait()
            except asyncio.QueueEmpty:
                if in_flight == 0:
                    return
                await asyncio.sleep(0.05)  # a dying server may yet hand its sample back
                continue
            in_flight += 1
            try:
                rec = await runner.run(sample, slot)
                if rec["error_kind"] == ServerGone.kind:  # not the sample's fault: hand it on
                    log.error("%s is gone (%s); the others carry on", slot.name, rec["error"])
                    queue.put_nowait(sample)
                    return
            finally:
                in_flight -= 1
            record(rec)
            progress.update(bar, advance=1, counts=counts_text())

    def record(rec: dict[str, Any]) -> None:
        runner.records.add_sample(rec)
        outcome.counts[rec["status"]] += 1
        if rec["status"] == "failed":
            outcome.failures.append((f"{rec['task']}/{rec['id']}", str(rec["error"])))
            log.error("%s/%s failed: %s", rec["task"], rec["id"], rec["error"])

    with progress:
        bar = progress.add_task("samples", total=len(samples), counts=counts_text())
        await asyncio.gather(*(worker(slot, bar) for slot in slots))
        while not queue.empty():  # every server is gone: the rest is failed, never dropped
            sample = queue.get_nowait()
            record(runner.failed_record(sample, "no server left to run it (see the server logs)"))
            progress.update(bar, advance=1, counts=counts_text())
    return outcome


async def run_interruptible(coro: Awaitable[object]) -> int | None:
    """Run ``coro``; SIGINT/SIGTERM (Ctrl-C, Slurm's scancel) cancel it cleanly. Returns the
    signal number that stopped it, or None when it ran to the end."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    got: list[int] = []

    def on_signal(signum: int) -> None:
        got.append(signum)
        task.cancel()

    previous = {s: signal.getsignal(s) for s in HANDLED}
    for signum in HANDLED:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
        return None
    except asyncio.CancelledError:
        if not got:
            raise
        return got[0]
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)  # asyncio leaves the default behind: put ours back


def print_summary(console: Console, outcome: BatchOutcome, records: RunRecords) -> None:
    counts = records.counts
    table = Table(title=f"run {records.run_id}", show_header=True)
    for col in ("ok", "failed", "skipped", "total"):
        table.add_column(col, justify="right")
    table.add_row(
        f"[green]{counts['ok']}[/]",
        f"[red]{counts['failed']}[/]",
        str(counts["skipped"]),
        str(sum(counts.values())),
    )
    console.print(table)
    for key, reason in outcome.failures[:20]:
        console.print(f"  [red]FAILED[/] {key}: {reason}")
    if len(outcome.failures) > 20:
        console.print(f"  ... and {len(outcome.failures) - 20} more (see samples.jsonl)")
    if outcome.interrupted_by is not None:
        name = signal.Signals(outcome.interrupted_by).name
        console.print(
            f"[bold yellow]INTERRUPTED by {name}[/]: completed samples are kept;"
            " run the same command again to resume."
        )
    elif counts["failed"]:
        console.print(
            f"[bold red]FAILED: {counts['failed']} sample(s) did not complete[/]"
            " - the evaluation would silently skip them. Re-run to retry them."
        )
    else:
        console.print("[bold green]ALL SAMPLES COMPLETE[/]")
    console.print(f"records: {records.manifest_path} and {records.samples_path}")


def default_slots(server: str) -> list[ServerSlot]:
    return [ServerSlot(url=normalize_server(server), name="server0")]


def default_run_dir(run_id: str) -> Path:
    return Path("runs") / run_id

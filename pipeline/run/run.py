"""The one entry point of a run: records -> pre-flight -> servers -> warm-up -> batch -> final
manifest, whatever happens (success, failure, a signal). `infer`, `bench` and a Slurm array
task call it with their own `ServerSource` (and, for a shard, their own samples)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import signals
from pipeline.config import ConfigError, InferSettings
from pipeline.dataset.discovery import Sample, discover
from pipeline.dataset.writable import require_writable
from pipeline.results.outputs import ALIGNMENT_DOC
from pipeline.results.records import RunRecords, RunStatus, SampleRecord, new_run_id
from pipeline.run import fingerprint, plan, selection
from pipeline.run.batch import run_batch
from pipeline.run.observer import RunObserver
from pipeline.run.sample import SampleRunner, with_hint
from pipeline.run.slots import ServerSlot
from pipeline.run.sources import Prepared, ServerSource
from pipeline.server.base import PreflightError, ServerError
from pipeline.stream.protocol import FRAME_SAMPLES
from pipeline.stream.session import SessionError

log = logging.getLogger("pipeline")
WARMUP_FRAMES = 13  # ~1 s of silence
PREFLIGHT_EXIT = 2  # a usage or pre-flight error: nothing ran


@dataclass
class RunOutcome:
    run_id: str
    records: RunRecords
    status: RunStatus = "started"
    interrupted: signals.Interrupted | None = None
    error: str | None = None  # the run-level error (pre-flight, a server that cannot start)
    preflight_failed: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return self.interrupted.exit_code
        if self.preflight_failed:
            return PREFLIGHT_EXIT
        return 1 if self.error is not None or self.records.incomplete else 0


def dataset(settings: InferSettings) -> list[Sample]:
    """Check the dataset before anything runs; return the run's samples in order: every
    sample, or those of the samples file, or one shard of them (pipeline/run/selection.py)."""
    if settings.root is None:
        raise ConfigError("no dataset root: pass --root DIR (or set root in the --config file)")
    found = discover(settings.root, settings.tasks, settings.prefix, settings.output_root)
    return selection.select(settings, found)


def settings_record(settings: InferSettings) -> dict[str, object]:
    return dataclasses.asdict(settings)


def manifest_basics(
    settings: InferSettings, samples: Sequence[Sample], prepared: Prepared
) -> dict[str, object]:
    """What every run's manifest says of its session settings and dataset."""
    return {
        "profile": settings.profile,
        "server_urls": prepared.urls,
        "prompts": {
            "voice_prompt": prepared.voice_prompt,
            "text_prompt": settings.text_prompt,
            "text_prompts": settings.text_prompts,
        },
        "alignment": ALIGNMENT_DOC,
        "dataset": {
            "root": str(settings.root),
            "tasks": sorted({s.task for s in samples}),
            "samples": len(samples),
            "prefix": settings.prefix,
            "output_root": str(settings.output_root) if settings.output_root else None,
            "shard": settings.shard or None,
            "samples_file": str(settings.samples_file) if settings.samples_file else None,
        },
    }


def default_run_dir(run_id: str) -> Path:
    return Path("runs") / run_id


def execute_run(
    settings: InferSettings,
    source: ServerSource,
    observer: RunObserver | None = None,
    *,
    samples: Sequence[Sample] | None = None,
    t_command: float | None = None,
) -> RunOutcome:
    """Run ``samples`` (default: the whole dataset of ``settings``) on ``source``'s servers."""
    t_command = time.monotonic() if t_command is None else t_command
    observer = observer or RunObserver()
    todo = list(samples) if samples is not None else dataset(settings)
    require_writable(todo)  # before any server starts: outputs go beside the inputs
    run_id = new_run_id()
    records = RunRecords(settings.run_dir or default_run_dir(run_id), run_id)
    outcome = RunOutcome(run_id, records)
    slots: list[ServerSlot] = []
    with signals.interruptible():
        try:
            prepared = source.prepare(run_id, records.run_dir)
            extra = {**manifest_basics(settings, todo, prepared), **prepared.manifest}
            records.start(settings_record(settings), extra)
            log.info(
                "run %s: %d samples, %d server(s) at %s (profile %s, pace %s); records in %s",
                run_id, len(todo), len(prepared.urls), ", ".join(prepared.urls),
                settings.profile, settings.pace, records.run_dir,
            )  # fmt: skip
            run_settings = dataclasses.replace(settings, voice_prompt=prepared.voice_prompt)
            runner = SampleRunner(run_settings, records)
            t0 = time.monotonic()
            slots = source.start(observer)
            outcome.timings["starting_s"] = time.monotonic() - t0
            runner.output_settings = fingerprint.output_settings(
                settings, prepared.voice_prompt, source.model_identity()
            )
            lanes = plan.assign(todo, len(slots))
            records.update(
                output_settings=runner.output_settings,
                plan=plan.describe(lanes, [s.name for s in slots]),
            )
            asyncio.run(
                signals.cancel_on_signal(
                    _serve(source, runner, slots, lanes, observer, outcome, t_command)
                )
            )
            outcome.status = "failed" if records.incomplete or outcome.error else "finished"
        except signals.Interrupted as exc:
            log.warning("interrupted by %s: stopping", exc.name)
            outcome.status, outcome.interrupted = "interrupted", exc
        except (PreflightError, ServerError) as exc:
            log.error("%s", exc)
            outcome.status, outcome.error = "failed", str(exc)
            outcome.preflight_failed = isinstance(exc, PreflightError)
        finally:
            _close(source, records, outcome, slots)
    return outcome


async def _serve(
    source: ServerSource,
    runner: SampleRunner,
    slots: list[ServerSlot],
    lanes: list[list[Sample]],
    observer: RunObserver,
    outcome: RunOutcome,
    t_command: float,
) -> None:
    """Warm-up (where the source wants one), then the batch; each sample recorded as it ends."""
    if source.warm_up:
        t0 = time.monotonic()
        await asyncio.gather(*(_warm_up(runner, slot) for slot in slots))
        outcome.timings["warmup_s"] = time.monotonic() - t0
    outcome.timings["to_first_session_s"] = time.monotonic() - t_command
    records = runner.records

    def on_record(rec: SampleRecord) -> None:
        records.add_sample(rec)
        if rec.status == "failed":
            log.error("%s failed: %s", rec.key, rec.error)
        observer.sample_finished(rec, records.count_table())

    observer.batch_started(sum(len(lane) for lane in lanes))
    t0 = time.monotonic()
    try:
        stopped = await run_batch(lanes, slots, runner, on_record, runner.settings.breaker)
        if stopped is not None:
            log.error("run stopped: %s", stopped)
            outcome.error = stopped
    finally:
        outcome.timings["streaming_s"] = time.monotonic() - t0
        observer.batch_finished()


async def _warm_up(runner: SampleRunner, slot: ServerSlot) -> None:
    """One short session that must succeed before anything is timed."""
    frames = np.zeros((WARMUP_FRAMES, FRAME_SAMPLES), dtype=np.float32)
    try:
        await runner.session(slot, frames, runner.settings.text_prompt)
    except SessionError as exc:
        raise ServerError(f"warm-up session on {slot.name} failed: {with_hint(exc)}") from None


def _close(
    source: ServerSource, records: RunRecords, outcome: RunOutcome, slots: list[ServerSlot]
) -> None:
    """Teardown and the final manifest, shielded from a second signal."""
    with signals.deferred() as ignored:
        t0 = time.monotonic()
        source.stop()
        outcome.timings["stopping_s"] = time.monotonic() - t0
        if records.started:
            extra: dict[str, Any] = {
                "sessions": {s.name: s.sessions for s in slots},
                "timings": {k: round(v, 3) for k, v in outcome.timings.items()},
            }
            servers = source.describe()
            if servers is not None:
                extra["servers"] = servers
            if outcome.error is not None:
                extra["error"] = outcome.error
            records.finish(outcome.status if outcome.status != "started" else "failed", **extra)
    if ignored:
        log.warning("signal received during teardown; finished the teardown first")

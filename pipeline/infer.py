"""`infer`: stream a dataset to a running server - the reference inference.py, done right."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from rich.console import Console

from pipeline.config import ConfigError, InferSettings
from pipeline.dataset.discovery import Sample, discover
from pipeline.results.outputs import ALIGNMENT_DOC
from pipeline.results.records import RunRecords, new_run_id
from pipeline.runner import (
    BatchOutcome,
    SampleRunner,
    ServerSlot,
    default_run_dir,
    default_slots,
    print_summary,
    run_batch,
    run_interruptible,
)

log = logging.getLogger("pipeline")


def plan(settings: InferSettings) -> list[Sample]:
    """Check the dataset before anything runs; return the samples in order."""
    if settings.root is None:
        raise ConfigError("no dataset root: pass --root DIR (or set root in the --config file)")
    return discover(settings.root, settings.tasks, settings.prefix)


def settings_record(settings: InferSettings) -> dict[str, object]:
    return dataclasses.asdict(settings)


def manifest_basics(
    settings: InferSettings, samples: Sequence[Sample], server_urls: list[str], voice: str
) -> dict[str, object]:
    """What every run's manifest says of its session settings and dataset."""
    return {
        "profile": settings.profile,
        "server_urls": server_urls,
        "prompts": {
            "voice_prompt": voice,
            "text_prompt": settings.text_prompt,
            "text_prompts": settings.text_prompts,
        },
        "alignment": ALIGNMENT_DOC,
        "dataset": {
            "root": str(settings.root),
            "tasks": sorted({s.task for s in samples}),
            "samples": len(samples),
            "prefix": settings.prefix,
        },
    }


def execute(
    settings: InferSettings,
    samples: Sequence[Sample],
    slots: Sequence[ServerSlot],
    records: RunRecords,
    console: Console,
) -> BatchOutcome:
    """Run the batch with signal handling and finalise the manifest whatever happens."""
    runner = SampleRunner(settings, records)
    status = "failed"
    outcome = BatchOutcome()
    try:
        outcome.interrupted_by = asyncio.run(
            run_interruptible(run_batch(samples, slots, runner, outcome, console))
        )
        if outcome.interrupted_by is not None:
            status = "interrupted"
        else:
            status = "failed" if outcome.counts["failed"] else "finished"
    finally:
        records.finish(status, sessions={s.name: s.sessions for s in slots})
    print_summary(console, outcome, records)
    return outcome


def infer(settings: InferSettings) -> int:
    samples = plan(settings)
    run_id = new_run_id()
    run_dir = settings.run_dir or default_run_dir(run_id)
    slots = default_slots(settings.server)
    records = RunRecords(run_dir, run_id)
    records.start(
        settings_record(settings),
        manifest_basics(settings, samples, [s.url for s in slots], settings.voice_prompt),
    )
    console = Console(stderr=True)
    log.info(
        "run %s: %d samples from %s -> %s (profile %s, pace %s); records in %s",
        run_id,
        len(samples),
        settings.root,
        slots[0].url,
        settings.profile,
        settings.pace,
        run_dir,
    )
    return execute(settings, samples, slots, records, console).exit_code

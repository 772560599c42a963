"""`bench`: pre-flight -> start the server(s) -> ready -> warm-up -> infer -> teardown -> summary.

Teardown always runs - on success, on an error, on Ctrl-C and on SIGTERM (Slurm's scancel) -
and is itself shielded from a second signal, so no container or process is left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from rich.console import Console

from pipeline.config import BenchSettings
from pipeline.dataset.audio import FRAME_SAMPLES
from pipeline.infer import execute, manifest_basics, plan, settings_record
from pipeline.results.records import RunRecords, new_run_id
from pipeline.runner import ServerGone, ServerSlot, default_run_dir
from pipeline.server.base import PreflightError, ServerBackend, ServerError
from pipeline.server.launch import LaunchPlan, plan_servers
from pipeline.server.preflight import cached_revision
from pipeline.server.readiness import wait_ready
from pipeline.signals import Interrupted, signals_deferred, signals_raise
from pipeline.stream.protocol import PROFILE_SPECS, session_url
from pipeline.stream.session import SessionError, Timeouts, run_session

log = logging.getLogger("pipeline")
WARMUP_FRAMES = 13  # ~1 s of silence


def _start_and_wait(backends: list[ServerBackend], timeout_s: float, console: Console) -> float:
    """Start every server and wait until all answer; fail fast on the first that dies."""
    t0 = time.monotonic()
    for b in backends:
        b.start()
    cancel = threading.Event()
    pool = ThreadPoolExecutor(len(backends), thread_name_prefix="ready")
    try:
        with console.status("starting server(s)...") as status:
            futures = [pool.submit(wait_ready, b, timeout_s, cancel=cancel) for b in backends]
            while not all(f.done() for f in futures):
                for f in futures:
                    exc = f.exception() if f.done() else None
                    if exc is not None:
                        raise exc
                waiting = sum(not f.done() for f in futures)
                status.update(
                    f"waiting for {waiting} server(s) to load the model"
                    f" ({time.monotonic() - t0:.0f} s of at most {timeout_s:.0f} s)"
                )
                time.sleep(0.05)
            for f in futures:
                f.result()
    finally:
        cancel.set()  # an error or a signal: the other waits end at their next poll
        pool.shutdown(wait=True, cancel_futures=True)
    took = time.monotonic() - t0
    log.info("%d server(s) ready after %.1f s", len(backends), took)
    return took


def _warm_up(settings: BenchSettings, voice: str, slots: list[ServerSlot]) -> None:
    """One short session per server that must succeed before anything is timed."""
    spec = PROFILE_SPECS[settings.profile]
    frames = np.zeros((WARMUP_FRAMES, FRAME_SAMPLES), dtype=np.float32)
    timeouts = Timeouts.of(settings)

    async def one(slot: ServerSlot) -> None:
        url = session_url(slot.url, settings.profile, voice, settings.text_prompt)
        try:
            await run_session(
                url,
                frames,
                spec,
                timeouts=timeouts,
                insecure=settings.insecure,
                encoder=settings.encoder,
            )
        except SessionError as exc:
            raise ServerError(f"warm-up session on {slot.name} failed: {exc.reason}") from None
        slot.sessions += 1

    async def all_slots() -> None:
        await asyncio.gather(*(one(s) for s in slots))

    asyncio.run(all_slots())


def _restarter(
    backend: ServerBackend, slot: ServerSlot, settings: BenchSettings
) -> Callable[[], Awaitable[None]]:
    """Before each session: a dead server is restarted (a bounded number of times)."""
    cancel = threading.Event()  # a signal mid-restart: stop waiting for the new server

    def restart_blocking() -> None:
        code = backend.exit_code()
        if backend.restarts >= settings.max_restarts:
            raise ServerGone(
                f"{backend.spec.name} died (exit code {code}) and was already restarted"
                f" {backend.restarts} time(s); see {backend.log_path}"
            )
        log.warning(
            "%s died (exit code %s); restarting it (%d/%d)",
            backend.spec.name, code, backend.restarts + 1, settings.max_restarts,
        )  # fmt: skip
        try:
            backend.restart(settings.stop_grace_s)
            wait_ready(backend, settings.startup_timeout_s, cancel=cancel)
        except (ServerError, PreflightError, OSError) as exc:
            raise ServerGone(f"{backend.spec.name} could not be restarted: {exc}") from None
        slot.sessions = 0  # a new process: its RNG starts again

    async def ensure() -> None:
        if backend.alive():
            return
        try:
            await asyncio.to_thread(restart_blocking)
        except asyncio.CancelledError:
            cancel.set()
            raise

    return ensure


def _teardown(backends: list[ServerBackend], grace_s: float) -> float:
    t0 = time.monotonic()
    with signals_deferred() as ignored:
        with ThreadPoolExecutor(max(1, len(backends))) as ex:
            list(ex.map(lambda b: _stop_quietly(b, grace_s), backends))
        if ignored:
            log.warning("signal received during teardown; finished the teardown first")
    return time.monotonic() - t0


def _stop_quietly(backend: ServerBackend, grace_s: float) -> None:
    try:
        backend.stop(grace_s)
    except Exception as exc:  # keep tearing the others down; say what is left
        log.error(
            "could not stop %s: %s - remove it with `python -m pipeline cleanup`",
            backend.spec.name,
            exc,
        )


def bench(settings: BenchSettings, t_command: float | None = None) -> int:
    t_command = t_command if t_command is not None else time.monotonic()
    console = Console(stderr=True)
    samples = plan(settings)
    run_id = new_run_id()
    run_dir = settings.run_dir or default_run_dir(run_id)
    records = RunRecords(run_dir, run_id)
    launch: LaunchPlan | None = None
    timings: dict[str, float] = {}
    with signals_raise():
        try:
            launch = plan_servers(settings, run_id, run_dir)
            run_settings = dataclasses.replace(settings, voice_prompt=launch.voice_prompt)
            records.start(settings_record(settings), _manifest_extra(settings, launch, samples))
            log.info(
                "run %s: %d samples, %d server(s) (%s); records in %s",
                run_id,
                len(samples),
                len(launch.backends),
                settings.runtime,
                run_dir,
            )
            timings["starting_s"] = _start_and_wait(
                launch.backends, settings.startup_timeout_s, console
            )
            slots = [ServerSlot(url=b.url, name=b.spec.name) for b in launch.backends]
            if settings.warmup:
                t0 = time.monotonic()
                _warm_up(settings, launch.voice_prompt, slots)
                timings["warmup_s"] = time.monotonic() - t0
            for b, slot in zip(launch.backends, slots, strict=True):
                slot.ensure_ready = _restarter(b, slot, settings)
            timings["to_first_session_s"] = time.monotonic() - t_command
            t0 = time.monotonic()
            outcome = execute(run_settings, samples, slots, records, console)
            timings["streaming_s"] = time.monotonic() - t0
            return outcome.exit_code
        except Interrupted as exc:
            log.warning("interrupted by %s: tearing down", exc)
            _finish_if_open(records, "interrupted")
            return exc.exit_code
        except (PreflightError, ServerError) as exc:
            log.error("%s", exc)
            _finish_if_open(records, "failed", error=str(exc))
            return 2 if isinstance(exc, PreflightError) else 1
        finally:
            if launch is not None:
                timings["stopping_s"] = _teardown(launch.backends, settings.stop_grace_s)
                if records.manifest:
                    records.update(
                        servers=[b.describe() for b in launch.backends],
                        timings={k: round(v, 3) for k, v in timings.items()},
                    )
                log.info("server(s) stopped in %.1f s; logs in %s", timings["stopping_s"], run_dir)


def _finish_if_open(records: RunRecords, status: str, **fields: Any) -> None:
    if records.manifest and records.manifest.get("status") == "started":
        records.finish(status, **fields)


def _manifest_extra(
    settings: BenchSettings, launch: LaunchPlan, samples: list[Any]
) -> dict[str, Any]:
    urls = [b.url for b in launch.backends]
    return {
        **manifest_basics(settings, samples, urls, launch.voice_prompt),
        "runtime": settings.runtime,
        "model": {
            "repository": None if launch.local_weights else launch.model_repo,
            "revision": None
            if launch.local_weights
            else cached_revision(settings.hf_cache, launch.model_repo),
            "local_weights": launch.local_weights,
        },
        "gpu": dataclasses.asdict(launch.gpu) if launch.gpu else None,
    }

"""Where a run's server slots come from: a server somebody already runs (`infer`), or servers
this tool starts, watches, restarts and tears down (`bench`; a Slurm array task too)."""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import BenchSettings, InferSettings, flag_for
from pipeline.run.observer import RunObserver
from pipeline.run.slots import ServerGone, ServerSlot
from pipeline.server.base import PreflightError, ServerBackend, ServerError, TeardownError
from pipeline.server.launch import LaunchPlan, plan_servers
from pipeline.server.preflight import cached_revision
from pipeline.server.readiness import wait_ready
from pipeline.stream.probe import probe_chat_server
from pipeline.stream.protocol import normalize_server
from pipeline.stream.session import client_ssl

log = logging.getLogger("pipeline")
READY_POLL_S = 0.05


@dataclass
class Prepared:
    """What pre-flight settled, before any server starts."""

    urls: list[str]
    voice_prompt: str  # what the sessions send (a custom voice: its name in the server's folder)
    manifest: dict[str, Any] = field(default_factory=dict)  # source-specific provenance


class ServerSource(abc.ABC):
    """The servers of one run."""

    warm_up = False  # one short session per server before the batch

    @abc.abstractmethod
    def prepare(self, run_id: str, run_dir: Path) -> Prepared:
        """Every pre-flight check (PreflightError names the fix); starts nothing."""

    @abc.abstractmethod
    def start(self, observer: RunObserver) -> list[ServerSlot]:
        """The slots, each ready for sessions (ServerError when a server cannot start)."""

    def stop(self) -> None:  # noqa: B027 - a source that starts nothing stops nothing
        """Tear down whatever was started; safe after a failed or partial start."""

    def describe(self) -> list[dict[str, Any]] | None:
        """Provenance of each server for the manifest (None: nothing to say)."""
        return None

    def model_identity(self) -> dict[str, Any] | None:
        """What identifies the model the servers run, once started (None: not known)."""
        return None


PROBE_TIMEOUT_S = 10.0  # at most: a wrong address must cost seconds, not a batch of retries


class ExistingServer(ServerSource):
    """A server somebody else runs, at ``--server``."""

    def __init__(self, settings: InferSettings) -> None:
        self.url = normalize_server(settings.server)
        self.voice_prompt = settings.voice_prompt
        self.timeout_s = min(settings.connect_timeout_s, PROBE_TIMEOUT_S)
        self.tls = client_ssl(self.url, settings.insecure)

    def prepare(self, run_id: str, run_dir: Path) -> Prepared:
        problem = probe_chat_server(self.url, self.timeout_s, self.tls)
        if problem is not None:
            raise PreflightError(
                f"{problem}: is the server running, and is {flag_for('server')} its address?"
            )
        return Prepared([self.url], self.voice_prompt)

    def start(self, observer: RunObserver) -> list[ServerSlot]:
        return [ServerSlot(url=self.url, name="server0")]


class StartedServers(ServerSource):
    """Servers this tool starts (Docker, Apptainer or a local process), one per device."""

    def __init__(self, settings: BenchSettings) -> None:
        self.settings = settings
        self.warm_up = settings.warmup
        self.launch: LaunchPlan | None = None
        self.weights: dict[str, str | None] = {}  # repository and cached revision (pre-flight)

    @property
    def backends(self) -> list[ServerBackend]:
        return self.launch.backends if self.launch is not None else []

    def prepare(self, run_id: str, run_dir: Path) -> Prepared:
        s = self.settings
        launch = self.launch = plan_servers(s, run_id, run_dir)
        self.weights = {
            "repository": None if launch.local_weights else launch.model_repo,
            "revision": None
            if launch.local_weights
            else cached_revision(s.hf_cache, launch.model_repo),
        }
        return Prepared(
            [b.url for b in launch.backends],
            launch.voice_prompt,
            {
                "runtime": s.runtime,
                "model": {**self.weights, "local_weights": launch.local_weights},
                "gpu": asdict(launch.gpu) if launch.gpu else None,
            },
        )

    def start(self, observer: RunObserver) -> list[ServerSlot]:
        backends = self.backends
        for b in backends:
            b.start()
        took = _wait_all_ready(backends, self.settings.startup_timeout_s, observer)
        log.info("%d server(s) ready after %.1f s", len(backends), took)
        slots = [ServerSlot(url=b.url, name=b.spec.name) for b in backends]
        for b, slot in zip(backends, slots, strict=True):
            slot.ensure_ready, slot.force_restart = _restarter(b, slot, self.settings)
        return slots

    def stop(self) -> None:
        backends = self.backends
        if self.launch is not None:
            self._stop_all(backends)
            self.launch.ports.release()

    def _stop_all(self, backends: list[ServerBackend]) -> None:
        if not backends:
            return
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(backends), thread_name_prefix="stop") as pool:
            list(pool.map(self._stop_one, backends))
        log.info(
            "server(s) stopped in %.1f s; logs in %s",
            time.monotonic() - t0,
            backends[0].log_path.parent,
        )

    def _stop_one(self, backend: ServerBackend) -> None:
        try:
            backend.stop(self.settings.stop_grace_s)
        except TeardownError as exc:  # it says what is left and the command that removes it
            log.error("teardown of %s failed: %s", backend.spec.name, exc)
        except Exception as exc:  # keep tearing the others down; say what is left
            log.error(
                "could not stop %s: %s - remove it with `python -m pipeline cleanup --run-id %s`",
                backend.spec.name,
                exc,
                backend.spec.run_id,
            )

    def describe(self) -> list[dict[str, Any]] | None:
        return [b.describe() for b in self.backends] if self.launch is not None else None

    def model_identity(self) -> dict[str, Any] | None:
        """The image (Docker image id, SIF sha256), the weights and the server command: every
        server of a run runs the same, so the first one speaks for all."""
        launch = self.launch
        if launch is None or not launch.backends:
            return None
        s = self.settings
        first = launch.backends[0].describe()
        return {
            "image": first.get("image_id") or first.get("image_sha256"),
            **self.weights,  # as pre-flight found them (the cache is read once)
            "device": "cpu" if first.get("device") == "cpu" else "gpu",  # not which GPU
            "server_command": s.server_command or None,
            "server_args": list(s.server_args),
        }


def _wait_all_ready(
    backends: list[ServerBackend], timeout_s: float, observer: RunObserver
) -> float:
    """Wait until every server answers; fail fast on the first that dies or times out."""
    t0 = time.monotonic()
    cancel = threading.Event()
    pool = ThreadPoolExecutor(len(backends), thread_name_prefix="ready")
    try:
        futures = [pool.submit(wait_ready, b, timeout_s, cancel=cancel) for b in backends]
        while not all(f.done() for f in futures):
            for f in futures:
                exc = f.exception() if f.done() else None
                if exc is not None:
                    raise exc
            waiting = sum(not f.done() for f in futures)
            observer.servers_waiting(waiting, time.monotonic() - t0, timeout_s)
            time.sleep(READY_POLL_S)
        for f in futures:
            f.result()
    finally:
        cancel.set()  # an error or a signal: the other waits end at their next poll
        pool.shutdown(wait=True, cancel_futures=True)
    observer.servers_ready()
    return time.monotonic() - t0


def _restarter(
    backend: ServerBackend, slot: ServerSlot, settings: BenchSettings
) -> tuple[Callable[[], Awaitable[None]], Callable[[str], Awaitable[None]]]:
    """Before each session: a dead server is restarted; and the breaker's forced restart of a
    live one. Both count against --max-restarts; past it the server is gone (ServerGone)."""
    cancel = threading.Event()  # a signal mid-restart: stop waiting for the new server

    def restart_blocking(why: str) -> None:
        name = backend.spec.name
        if backend.restarts >= settings.max_restarts:
            raise ServerGone(
                f"{name} {why} and was already restarted {backend.restarts} time(s)"
                f" ({flag_for('max_restarts')} {settings.max_restarts}); see {backend.log_path}"
            )
        log.warning(
            "%s %s; restarting it (%d/%d)",
            name, why, backend.restarts + 1, settings.max_restarts,
        )  # fmt: skip
        try:
            backend.restart(settings.stop_grace_s)
            wait_ready(backend, settings.startup_timeout_s, cancel=cancel)
        except (ServerError, PreflightError, OSError) as exc:
            raise ServerGone(f"{name} could not be restarted: {exc}") from None
        slot.sessions = 0  # a new process: its RNG starts again

    async def in_thread(why: str) -> None:
        try:
            await asyncio.to_thread(restart_blocking, why)
        except asyncio.CancelledError:
            cancel.set()
            raise

    async def ensure() -> None:
        if not backend.alive():
            await in_thread(f"died (exit code {backend.exit_code()})")

    return ensure, in_thread

"""`StartedServers` (what `bench` runs on) with in-process stand-in backends over the fake
server: readiness, a dead server restarted before the next session, one that may not be
restarted handing its samples on, a start-up death seen at once, a failed teardown reported."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import BenchSettings
from pipeline.results.records import SampleRecord
from pipeline.run.batch import NO_SERVER_LEFT
from pipeline.run.observer import RunObserver
from pipeline.run.run import execute_run
from pipeline.run.sources import Prepared, StartedServers
from pipeline.server.base import ServerBackend, ServerSpec, TeardownError
from pipeline.server.launch import LaunchPlan
from pipeline.server.preflight import free_port
from tests.conftest import ZERO_COUNTS
from tests.fakes.fake_server import Behaviour, FakeServer
from tests.test_runner import make_dataset


class InProcessBackend(ServerBackend):
    """A 'server process' that is the fake server in a thread; `kill` is its death."""

    runtime = "in-process"

    def __init__(
        self,
        index: int,
        log_dir: Path,
        *,
        dies_at_start: bool = False,
        first_life: Behaviour | None = None,
    ) -> None:
        spec = ServerSpec(["fake"], port=free_port(), run_id="t", index=index)
        super().__init__(spec, log_dir)
        self.first_life = first_life or Behaviour()  # how its first process serves sessions
        self.server: FakeServer | None = None
        self.code: int | None = None
        self.dies_at_start = dies_at_start
        self.starts = 0
        self.teardown_fails = False

    def start(self) -> None:
        self.starts += 1
        if self.dies_at_start:
            self.code = 3
            return
        behaviour = self.first_life if self.starts == 1 else Behaviour()
        self.server = FakeServer(behaviour, port=self.spec.port).start()
        self.code = None

    def kill(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.code = 137

    def exit_code(self) -> int | None:
        return self.code

    def logs(self, tail: int | None = None) -> str:
        return "CUDA error: out of memory" if self.dies_at_start else ""

    def stop(self, grace_s: float = 10.0) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.code = self.code if self.code is not None else 0
        if self.teardown_fails:
            raise TeardownError(
                f"{self.spec.name} is still running", f"kill -9 -{4242 + self.spec.index}"
            )


class Servers(StartedServers):
    def __init__(self, settings: BenchSettings, backends: list[InProcessBackend]) -> None:
        super().__init__(settings)
        self.stand_ins = backends

    def prepare(self, run_id: str, run_dir: Path) -> Prepared:
        self.launch = LaunchPlan(list(self.stand_ins), "NATF2.pt", "stub/model", True, None)
        return Prepared([b.url for b in self.stand_ins], "NATF2.pt")


class KillAfter(RunObserver):
    """Kills ``backend`` once ``n`` samples have finished."""

    def __init__(self, backend: InProcessBackend, n: int) -> None:
        self.backend, self.n, self.seen = backend, n, 0

    def sample_finished(self, record: SampleRecord, counts: Mapping[str, int]) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.backend.kill()


def bench_settings(tmp_path: Path, n: int = 3, **kw: Any) -> BenchSettings:
    make_dataset(tmp_path / "data", n)
    return BenchSettings(
        root=tmp_path / "data",
        run_dir=tmp_path / "run",
        runtime="local",
        gpus="none",
        startup_timeout_s=10,
        retry_backoff_s=0.01,
        **kw,
    )


def manifest(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "run" / "manifest.json").read_text())
    return doc


def test_a_dead_server_is_restarted_before_the_next_session(tmp_path: Path) -> None:
    backend = InProcessBackend(0, tmp_path)
    s = bench_settings(tmp_path, max_restarts=1)
    outcome = execute_run(s, Servers(s, [backend]), KillAfter(backend, 1))
    assert outcome.exit_code == 0 and outcome.records.counts["ok"] == 3
    assert backend.restarts == 1 and backend.starts == 2  # the path under test ran
    m = manifest(tmp_path)
    assert m["servers"][0]["restarts"] == 1
    # a new process: its session count starts again (the warm-up ran on the first one)
    assert m["sessions"] == {backend.spec.name: 2}


def test_a_server_that_may_not_restart_hands_its_samples_to_the_others(tmp_path: Path) -> None:
    doomed, other = InProcessBackend(0, tmp_path), InProcessBackend(1, tmp_path)
    s = bench_settings(tmp_path, n=4, max_restarts=0)
    outcome = execute_run(s, Servers(s, [doomed, other]), KillAfter(doomed, 1))
    assert outcome.exit_code == 0 and outcome.records.counts["ok"] == 4
    assert doomed.restarts == 0 and doomed.starts == 1


def test_the_last_server_gone_fails_the_rest_never_drops_them(tmp_path: Path) -> None:
    backend = InProcessBackend(0, tmp_path)
    s = bench_settings(tmp_path, max_restarts=0)
    outcome = execute_run(s, Servers(s, [backend]), KillAfter(backend, 1))
    assert outcome.exit_code == 1
    assert outcome.records.count_table() == {**ZERO_COUNTS, "ok": 1, "not_run": 2}
    assert {r.error for r in outcome.records.failures} == {NO_SERVER_LEFT}
    assert outcome.error == NO_SERVER_LEFT


def test_a_server_dying_at_start_up_fails_at_once_with_its_log(tmp_path: Path) -> None:
    ok, dying = InProcessBackend(0, tmp_path), InProcessBackend(1, tmp_path, dies_at_start=True)
    s = bench_settings(tmp_path)
    outcome = execute_run(s, Servers(s, [ok, dying]))
    assert outcome.exit_code == 1 and outcome.error is not None
    assert "exited with code 3 during start-up" in outcome.error
    assert "CUDA error: out of memory" in outcome.error
    assert ok.server is None  # torn down too


def test_a_failed_teardown_is_reported_with_the_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stuck, fine = InProcessBackend(0, tmp_path), InProcessBackend(1, tmp_path)
    stuck.teardown_fails = True
    s = bench_settings(tmp_path, n=1)
    outcome = execute_run(s, Servers(s, [stuck, fine]))
    assert outcome.exit_code == 0
    assert fine.server is None  # the others are still torn down
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("kill -9 -4242" in e and stuck.spec.name in e for e in errors)


def test_the_breaker_restarts_a_live_server_that_fails_every_sample(tmp_path: Path) -> None:
    """A server alive but broken (a sticky CUDA error): without the breaker every remaining
    sample failed one by one on it; now two failures in a row restart it."""
    broken = InProcessBackend(0, tmp_path, first_life=Behaviour(stall_after_frames=1))
    s = bench_settings(
        tmp_path, n=5, breaker=2, stall_timeout_s=0.5, sample_retries=0, max_restarts=1,
        warmup=False,
    )  # fmt: skip
    outcome = execute_run(s, Servers(s, [broken]))
    assert broken.restarts == 1 and broken.starts == 2  # the path under test ran
    assert outcome.records.count_table() == {**ZERO_COUNTS, "ok": 3, "failed": 2}
    assert outcome.exit_code == 1 and outcome.error is None  # the run itself went on


def test_the_breaker_past_max_restarts_records_the_rest_as_not_run(tmp_path: Path) -> None:
    broken = InProcessBackend(0, tmp_path, first_life=Behaviour(stall_after_frames=1))
    s = bench_settings(
        tmp_path, n=5, breaker=2, stall_timeout_s=0.5, sample_retries=0, max_restarts=0,
        warmup=False,
    )  # fmt: skip
    outcome = execute_run(s, Servers(s, [broken]))
    assert broken.restarts == 0
    assert outcome.records.count_table() == {**ZERO_COUNTS, "failed": 2, "not_run": 3}
    assert outcome.exit_code == 1 and outcome.error == NO_SERVER_LEFT

"""`execute_run`, the one entry point, with stand-in server sources over the fake server: the
manifest from start to end, the exit code of each ending, warm-up, teardown always, progress
reported through the observer."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import InferSettings
from pipeline.results.records import SampleRecord
from pipeline.run.observer import RunObserver
from pipeline.run.run import execute_run
from pipeline.run.slots import ServerSlot
from pipeline.run.sources import Prepared, ServerSource
from pipeline.server.base import PreflightError, ServerError
from tests.conftest import ZERO_COUNTS
from tests.fakes.fake_server import Behaviour, FakeServer
from tests.test_runner import make_dataset


class StubSource(ServerSource):
    """Servers at given URLs; fails where told to; notes what was asked of it."""

    def __init__(self, urls: list[str], fail_at: str | None = None, warm_up: bool = False):
        self.urls = urls
        self.fail_at = fail_at
        self.warm_up = warm_up
        self.calls: list[str] = []

    def prepare(self, run_id: str, run_dir: Path) -> Prepared:
        self.calls.append("prepare")
        if self.fail_at == "prepare":
            raise PreflightError("no GPU here: pass --gpus none")
        return Prepared(self.urls, "NATF2.pt", {"runtime": "stub"})

    def start(self, observer: RunObserver) -> list[ServerSlot]:
        self.calls.append("start")
        if self.fail_at == "start":
            raise ServerError("server0 exited with code 3 during start-up", "weights missing")
        return [ServerSlot(url=u, name=f"server{i}") for i, u in enumerate(self.urls)]

    def stop(self) -> None:
        self.calls.append("stop")

    def describe(self) -> list[dict[str, Any]] | None:
        return [{"url": u} for u in self.urls]


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def batch_started(self, total: int) -> None:
        self.events.append(("started", total))

    def sample_finished(self, record: SampleRecord, counts: Mapping[str, int]) -> None:
        self.events.append(("sample", dict(counts)))

    def batch_finished(self) -> None:
        self.events.append(("finished", None))


def settings(tmp_path: Path, **kw: Any) -> InferSettings:
    root = tmp_path / "data"
    if not root.exists():
        make_dataset(root, 2)
    return InferSettings(root=root, run_dir=tmp_path / "run", retry_backoff_s=0.01, **kw)


def manifest(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "run" / "manifest.json").read_text())
    return doc


def test_a_whole_run_reports_progress_and_finishes_the_manifest(tmp_path: Path) -> None:
    observer = Recorder()
    with FakeServer(Behaviour()) as srv:
        source = StubSource([srv.chat_url], warm_up=True)
        outcome = execute_run(settings(tmp_path), source, observer)
        assert len(srv.sessions) == 3  # the warm-up, then two samples
    assert outcome.exit_code == 0 and outcome.status == "finished"
    assert source.calls == ["prepare", "start", "stop"]
    assert observer.events == [
        ("started", 2),
        ("sample", {**ZERO_COUNTS, "ok": 1}),
        ("sample", {**ZERO_COUNTS, "ok": 2}),
        ("finished", None),
    ]
    m = manifest(tmp_path)
    assert m["status"] == "finished" and m["runtime"] == "stub"
    assert m["servers"] == [{"url": srv.chat_url}] and m["sessions"] == {"server0": 3}
    assert set(m["timings"]) == {
        "starting_s", "warmup_s", "to_first_session_s", "streaming_s", "stopping_s"
    }  # fmt: skip


def test_preflight_failure_exits_2_starts_nothing_and_writes_no_manifest(tmp_path: Path) -> None:
    source = StubSource(["ws://127.0.0.1:9/api/chat"], fail_at="prepare")
    outcome = execute_run(settings(tmp_path), source)
    assert outcome.exit_code == 2 and outcome.preflight_failed
    assert source.calls == ["prepare", "stop"]
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_server_that_cannot_start_fails_the_run_with_its_log(tmp_path: Path) -> None:
    source = StubSource(["ws://127.0.0.1:9/api/chat"], fail_at="start")
    outcome = execute_run(settings(tmp_path), source)
    assert outcome.exit_code == 1 and source.calls == ["prepare", "start", "stop"]
    m = manifest(tmp_path)
    assert m["status"] == "failed" and "exited with code 3" in m["error"]
    assert "weights missing" in m["error"]


def test_a_failed_warm_up_fails_the_run_before_any_sample(tmp_path: Path) -> None:
    with FakeServer(Behaviour(close_after_frames=2)) as srv:
        source = StubSource([srv.chat_url], warm_up=True)
        outcome = execute_run(settings(tmp_path), source)
    assert outcome.exit_code == 1 and outcome.error is not None
    assert "warm-up session on server0 failed" in outcome.error
    assert source.calls[-1] == "stop" and manifest(tmp_path)["counts"]["ok"] == 0


def test_a_signal_mid_batch_interrupts_tears_down_and_keeps_what_finished(tmp_path: Path) -> None:
    class KillAfterFirst(Recorder):
        def sample_finished(self, record: SampleRecord, counts: Mapping[str, int]) -> None:
            super().sample_finished(record, counts)
            os.kill(os.getpid(), signal.SIGTERM)  # as Slurm's scancel, after the first sample

    observer = KillAfterFirst()
    with FakeServer(Behaviour()) as srv:
        source = StubSource([srv.chat_url])
        outcome = execute_run(settings(tmp_path), source, observer)
    assert outcome.exit_code == 143 and outcome.status == "interrupted"
    assert source.calls == ["prepare", "start", "stop"]
    m = manifest(tmp_path)
    assert m["status"] == "interrupted" and m["counts"]["ok"] == 1
    assert ("finished", None) in observer.events  # the batch's end is reported, interrupted


def test_two_servers_one_queue_every_sample_once(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data", 6)
    with FakeServer(Behaviour()) as a, FakeServer(Behaviour()) as b:
        source = StubSource([a.chat_url, b.chat_url])
        outcome = execute_run(settings(tmp_path), source)
        assert len(a.sessions) + len(b.sessions) == 6
    assert outcome.exit_code == 0
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == [str(i) for i in range(6)]


@pytest.mark.parametrize("status", ["ok", "skipped"])
def test_exit_code_counts_only_failures(tmp_path: Path, status: str) -> None:
    with FakeServer(Behaviour()) as srv:
        execute_run(settings(tmp_path), StubSource([srv.chat_url]))
        again = execute_run(
            settings(tmp_path, overwrite=status == "ok"), StubSource([srv.chat_url])
        )
    assert again.exit_code == 0 and again.records.counts[status] == 2  # type: ignore[index]

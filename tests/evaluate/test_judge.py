"""The judge stage against a local OpenAI-compatible fake: what it sends (FDB's models, seeds
and messages filled from the sample's ASR files and the checkout's instructions), bounded
retries and re-asks, an authentication error stopping the stage, the key never written, and
resume."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.evaluate.provenance import EVAL_KEY
from pipeline.evaluate.runner import evaluate
from pipeline.evaluate.settings import EvalSettings, JudgeSettings
from tests.evaluate.fake_openai import HANG, FakeJudge, fake_judge, ok, status
from tests.evaluate.judge_fixtures import (
    BEHAVIOUR_TEXT,
    INTERRUPTION_TEXT,
    RATED,
    V10_TASK,
    V15_TASK,
    make_fdb_checkout,
    make_judge_data,
)

pytestmark = pytest.mark.timeout(60)
KEY = "sk-test-" + "k3y" * 8
ENV = "FDB_TEST_JUDGE_KEY"
TAG = '{"behaviour": ["C_RESPOND"]}'


def replies(body: dict[str, Any]) -> Any:
    """FDB-shaped answers: a rating for the interruption judge, a tag for the behaviour one."""
    return ok(RATED if body["messages"][0]["content"] == INTERRUPTION_TEXT else TAG)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(ENV, KEY)
    with fake_judge() as judge:
        judge.default = replies
        yield judge


def run(
    tmp_path: Path, fake: FakeJudge, **judge: Any
) -> tuple[int, dict[str, Any], list[dict[str, Any]], Path]:
    data = tmp_path / "data"
    if not data.exists():
        make_judge_data(tmp_path)
    fdb, digests = make_fdb_checkout(tmp_path, judge.pop("behaviour", BEHAVIOUR_TEXT))
    options = {"base_url": fake.url, "api_key_env": ENV, "backoff_s": 0.01, **judge}
    settings = EvalSettings(
        root=data,
        stages=("judge", "stats"),
        fdb_repo=fdb,
        run_dir=tmp_path / "run",
        judge=JudgeSettings(**options),
    )
    code, scores = evaluate(settings, digests["truth"], digests)
    lines = (tmp_path / "run" / "eval-samples.jsonl").read_text().splitlines()
    return code, scores, [json.loads(line) for line in lines], data


def expected_message(folder: Path) -> str:
    """The stand-in checkout's behaviour f-string, filled by hand: each ASR file as compact
    JSON (as FDB's script dumps it) in its own place."""

    def text(name: str) -> str:
        body = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        body.pop(EVAL_KEY, None)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    a, b, c, d = (text(n) for n in ("clean_input", "input", "clean_output", "output"))
    return f"\n  <IC {a}>\n  <IN {b}>\n  <OC {c}>\n  <ON {d}> {{braces}}\n"


def test_requests_are_filled_as_fdb_fills_them(tmp_path: Path, fake: FakeJudge) -> None:
    data = make_judge_data(tmp_path)
    # a provenance key (as this pipeline's ASR stage writes one) is not part of the prompt
    out = data / V15_TASK / "1" / "output.json"
    body = json.loads(out.read_text())
    out.write_text(json.dumps({**body, EVAL_KEY: {"stage": "asr"}}))
    code, scores, records, _ = run(tmp_path, fake)
    assert code == 0
    behaviour = [r for r in fake.received if r["model"] == "gpt-4o-2024-08-06"]
    interruption = [r for r in fake.received if r["model"] == "gpt-4-turbo"]
    assert len(behaviour) == 2 and len(interruption) == 1  # v1.0 sample 2 took no turn
    assert all(h["authorization"] == f"Bearer {KEY}" for h in fake.headers)
    for request, sid in zip(behaviour, ("1", "2"), strict=True):
        assert request["seed"] == 1
        assert "temperature" not in request  # FDB sends none
        system, user = request["messages"]
        assert system == {"role": "system", "content": BEHAVIOUR_TEXT}
        assert user == {"role": "user", "content": expected_message(data / V15_TASK / sid)}
    (request,) = interruption
    assert request["seed"] == 0
    assert request["messages"][0]["content"] == INTERRUPTION_TEXT
    assert request["messages"][1]["content"] == (
        "\n  CONTEXT[I was telling you about my weekend.]\n"
        "  INTERRUPT[Wait, what time is it?]\n  RESPONSE[ Sure I will stop]\n"
    )
    tag = json.loads((data / V15_TASK / "1" / "content_tag.json").read_text())
    assert tag["behaviour"] == ["C_RESPOND"]
    kept = tag[EVAL_KEY]["values"]
    assert kept["model"] == "gpt-4o-2024-08-06" and kept["seed"] == 1 and kept["asks"] == 1
    assert kept["raw_reply"] == TAG
    canonical = json.dumps(behaviour[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert kept["request_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    rating = json.loads((data / V10_TASK / "1" / "rating.json").read_text())
    assert rating["rating"] == 4 and rating["analysis"] == "it stopped\nand answered."
    assert scores[V15_TASK]["behaviour_C_RESPOND"] == 1.0
    assert scores[V10_TASK]["judge"] == 4.0 and scores[V10_TASK]["judge_n"] == 1
    assert {r["status"] for r in records if r["stage"] == "judge"} == {"done"}


def test_a_malformed_reply_is_asked_again_with_fdbs_next_seed(
    tmp_path: Path, fake: FakeJudge
) -> None:
    make_judge_data(tmp_path)
    fake.script.extend([ok("I think it responded."), ok('Sure: {"behaviour": ["C_RESUME"]} ok')])
    code, scores, _, data = run(tmp_path, fake, reasks=2)
    assert code == 0
    first = [r["seed"] for r in fake.received if r["model"] == "gpt-4o-2024-08-06"]
    assert first[:2] == [1, 2]  # the re-ask of sample 1, as FDB's loop would
    kept = json.loads((data / V15_TASK / "1" / "content_tag.json").read_text())[EVAL_KEY]
    assert kept["values"]["seed"] == 2 and kept["values"]["asks"] == 2
    assert scores[V15_TASK]["behaviour_C_RESUME"] == 0.5


def test_malformed_replies_are_bounded_and_the_raw_reply_kept(
    tmp_path: Path, fake: FakeJudge
) -> None:
    fake.default = lambda body: ok("no tag here, sorry")
    code, _, records, data = run(tmp_path, fake, reasks=2)
    assert code == 1
    assert len(fake.received) == 3 * 2 + 3  # 3 asks for each of 3 judged samples
    v10 = [r["seed"] for r in fake.received if r["model"] == "gpt-4-turbo"]
    assert v10 == [0, 0, 0]  # FDB asks the interruption judge again with the same seed
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 3
    assert all("no tag here, sorry" in r["error"] for r in failed)
    assert not (data / V15_TASK / "1" / "content_tag.json").exists()


def test_429_then_ok(tmp_path: Path, fake: FakeJudge) -> None:
    make_judge_data(tmp_path)
    fake.script.extend([status(429, "slow down"), status(429, "slow down")])
    code, _, _, _ = run(tmp_path, fake, attempts=3)
    assert code == 0
    assert len(fake.received) == 2 + 3


def test_500_is_bounded(tmp_path: Path, fake: FakeJudge) -> None:
    fake.default = lambda body: status(500, "overloaded")
    code, _, records, _ = run(tmp_path, fake, attempts=3)
    assert code == 1
    assert len(fake.received) == 3 * 3
    errors = [r["error"] for r in records if r["status"] == "failed"]
    assert len(errors) == 3
    assert all("HTTP 500" in e and "after 3 attempts" in e for e in errors)


def test_a_hanging_endpoint_times_out(tmp_path: Path, fake: FakeJudge) -> None:
    fake.default = lambda body: HANG
    t0 = time.monotonic()
    code, _, records, _ = run(tmp_path, fake, attempts=2, timeout_s=0.5)
    assert code == 1
    assert len(fake.received) == 2 * 3
    assert time.monotonic() - t0 < 20
    errors = [r["error"] for r in records if r["status"] == "failed"]
    assert len(errors) == 3 and all("Timeout" in e for e in errors)


def test_401_stops_the_stage_at_once_naming_the_variable(
    tmp_path: Path, fake: FakeJudge, caplog: pytest.LogCaptureFixture
) -> None:
    fake.default = lambda body: status(401, f"Incorrect API key provided: {KEY}")
    code, _, records, _ = run(tmp_path, fake, attempts=5)
    assert code == 1
    assert len(fake.received) == 1  # neither retried nor asked for the next sample
    judged = [r for r in records if r["stage"] == "judge"]
    assert len(judged) == 4 and all(r["status"] == "failed" for r in judged)
    assert f"${ENV}" in judged[0]["error"] and "HTTP 401" in judged[0]["error"]
    assert all("stage stopped" in r["error"] for r in judged[1:])
    assert KEY not in caplog.text and KEY not in json.dumps(records)


def test_the_key_is_never_written(
    tmp_path: Path,
    fake: FakeJudge,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs too
    make_judge_data(tmp_path)
    # a reply and an error that quote the key (a careless proxy): masked before kept
    fake.script.extend(
        [ok(f'{{"behaviour": ["C_RESPOND"], "note": "{KEY}"}}'), status(400, f"bad: {KEY}")]
    )
    run(tmp_path, fake)
    out = capsys.readouterr()
    assert "POST" in caplog.text or "Request options" in caplog.text  # the SDK did log
    assert KEY not in caplog.text + out.out + out.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    records = (tmp_path / "run" / "eval-samples.jsonl").read_text()
    assert "HTTP 400" in records and "bad: ***" in records


def test_resume_sends_nothing_for_finished_samples(tmp_path: Path, fake: FakeJudge) -> None:
    run(tmp_path, fake)
    assert len(fake.received) == 3
    code, scores, records, _ = run(tmp_path, fake)
    assert code == 0 and len(fake.received) == 3
    assert [r["status"] for r in records[-3:] if r["stage"] == "judge"] == ["kept"] * 3
    assert scores[V10_TASK]["judge"] == 4.0
    # another behaviour instruction redoes the v1.5 samples, and only them
    run(tmp_path, fake, behaviour=BEHAVIOUR_TEXT + "Changed.\n")
    assert len(fake.received) == 5
    assert all(r["model"] == "gpt-4o-2024-08-06" for r in fake.received[3:])
    # another model too
    run(tmp_path, fake, behaviour=BEHAVIOUR_TEXT + "Changed.\n", model="local-judge")
    assert [r["model"] for r in fake.received[5:]] == ["local-judge"] * 3
    assert len(fake.received) == 8


def _evaluate_in_child(settings: EvalSettings, digests: dict[str, str]) -> None:
    evaluate(settings, digests["truth"], digests)


def test_sigkill_while_asking_then_rerun(tmp_path: Path, fake: FakeJudge) -> None:
    data = make_judge_data(tmp_path)
    fdb, digests = make_fdb_checkout(tmp_path)
    first = data / V15_TASK / "1" / "content_tag.json"
    fake.script.extend([ok(TAG), HANG])  # sample 1 answered, sample 2 never
    judge = JudgeSettings(base_url=fake.url, api_key_env=ENV, timeout_s=50, attempts=1)
    settings = EvalSettings(
        root=data, stages=("judge",), fdb_repo=fdb, run_dir=tmp_path / "k", judge=judge
    )
    child = multiprocessing.get_context("spawn").Process(
        target=_evaluate_in_child, args=(settings, digests)
    )
    child.start()
    deadline = time.monotonic() + 40
    while len(fake.received) < 2 and time.monotonic() < deadline and child.is_alive():
        time.sleep(0.01)
    assert len(fake.received) == 2 and first.is_file()
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join()
    made = first.stat().st_mtime_ns
    code, _, records, _ = run(tmp_path, fake)
    assert code == 0
    assert len(fake.received) == 2 + 2  # sample 2 and the v1.0 sample, not sample 1
    assert first.stat().st_mtime_ns == made
    judged = {r["sample"] + r["task"]: r["status"] for r in records if r["stage"] == "judge"}
    assert judged[f"1{V15_TASK}"] == "kept" and judged[f"2{V15_TASK}"] == "done"
    assert [p for p in data.rglob("*") if p.name.endswith(".partial")] == []

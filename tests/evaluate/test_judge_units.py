"""The judge's pieces without an endpoint: replies parsed as FDB parses them, instructions read
from a checkout (sha256-checked, the interruption one found in its script without running it),
the judge's and prosody's requirements, and the v1.0 interruption's TOR and latency."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.dataset.discovery import Sample
from pipeline.digest import file_sha256
from pipeline.evaluate import prosody
from pipeline.evaluate.fdb_repo import FdbRepoError
from pipeline.evaluate.judge_replies import MalformedReply, behaviour_of, rating_of
from pipeline.evaluate.judge_sources import INTERRUPTION_FIELDS, load_prompts
from pipeline.evaluate.runner import choose_stages, stage_requirement
from pipeline.evaluate.settings import EvalSettings, JudgeSettings
from pipeline.evaluate.stage_rules import RulesStage
from pipeline.evaluate.stages import EvalContext
from tests.evaluate.judge_fixtures import (
    BEHAVIOUR_TEXT,
    INTERRUPTION_TEXT,
    V10_TASK,
    make_fdb_checkout,
    make_judge_data,
)

ENV = "FDB_TEST_UNSET_JUDGE_KEY"


def test_behaviour_is_the_first_object_with_the_key() -> None:
    reply = 'Hm {not json} then {"other": 1} and {"behaviour": ["C_RESUME"]} {"behaviour": []}'
    assert behaviour_of(reply) == {"behaviour": ["C_RESUME"]}
    with pytest.raises(MalformedReply, match="list of tags"):
        behaviour_of('{"behaviour": "C_RESUME"}')
    with pytest.raises(MalformedReply, match="no JSON object"):
        behaviour_of("C_RESUME")


def test_the_last_rating_counts(tmp_path: Path) -> None:
    fdb, digests = make_fdb_checkout(tmp_path)
    pattern = load_prompts(fdb, digests).rating  # the checkout's pattern, with its flag
    reply = "Why: first.\nScore=2.\nWhy: on second thought,\nit was good.\nScore=5."
    assert rating_of(reply, pattern) == {
        "analysis": "on second thought,\nit was good.",
        "rating": 5,
    }
    with pytest.raises(MalformedReply):
        rating_of("Score=3.", pattern)  # no analysis before it


def test_prompts_are_read_from_the_checkout(tmp_path: Path) -> None:
    fdb, digests = make_fdb_checkout(tmp_path)
    prompts = load_prompts(fdb, digests)
    assert prompts.behaviour_system == BEHAVIOUR_TEXT
    assert prompts.interruption_system == INTERRUPTION_TEXT  # the function's, not unrelated()'s
    assert prompts.behaviour_sha256 == f"{digests['behaviour']}+{digests['behaviour_script']}"
    assert prompts.interruption_sha256 == digests["interruption"]
    filled = prompts.interruption_user.fill(
        {"context": "a", "interrupt": "b", "response": "c"}, INTERRUPTION_FIELDS
    )
    assert filled == "\n  CONTEXT[a]\n  INTERRUPT[b]\n  RESPONSE[c]\n"


def test_another_version_of_a_prompt_file_is_refused(tmp_path: Path) -> None:
    fdb, digests = make_fdb_checkout(tmp_path)
    with pytest.raises(FdbRepoError, match=r"behavior\.txt has sha256"):
        load_prompts(fdb, {**digests, "behaviour": "0" * 64})
    with pytest.raises(FdbRepoError, match=r"eval_behavior\.py has sha256"):
        load_prompts(fdb, {**digests, "behaviour_script": "0" * 64})
    with pytest.raises(FdbRepoError, match=r"no v1_v1\.5/evaluation/instruction/behavior\.txt"):
        load_prompts(tmp_path / "elsewhere", digests)


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("def eval_user_interruption(root_dir, client):\n    return 0\n", "no string system_msg"),
        ("def (:\n", "not readable Python"),
        (
            'def eval_user_interruption(r, c):\n    system_msg = "s"\n    user_msg = "plain"\n',
            "user_msg is not an f-string",
        ),
        (
            'def eval_user_interruption(r, c):\n    system_msg = "s"\n'
            '    user_msg = f"{in_interrupt_text!r} {in_before_interrupt_text}"\n',
            "other than a plain variable",
        ),
        (
            'def eval_user_interruption(r, c):\n    system_msg = "s"\n'
            '    user_msg = f"{in_interrupt_text}"\n',
            "fills in ['in_interrupt_text'], not",
        ),
    ],
)
def test_a_script_of_another_shape_is_named(tmp_path: Path, script: str, error: str) -> None:
    fdb, digests = make_fdb_checkout(tmp_path)
    path = fdb / "v1_v1.5" / "evaluation" / "eval_user_interruption.py"
    path.write_text(script, encoding="utf-8")
    changed = {**digests, "interruption": file_sha256(path)}
    with pytest.raises(FdbRepoError, match=re.escape(error)):
        load_prompts(fdb, changed)


def test_the_judge_is_named_as_not_run_without_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    judge = JudgeSettings(api_key_env=ENV)
    settings = EvalSettings(root=tmp_path, fdb_repo=tmp_path, judge=judge)
    _, not_run = choose_stages(settings)
    assert not_run["judge"].startswith(f"needs ${ENV}")
    no_checkout = EvalSettings(root=tmp_path, judge=judge)
    assert "--fdb-repo" in (stage_requirement("judge", no_checkout) or "")
    monkeypatch.setenv(ENV, "x")
    assert stage_requirement("judge", settings) is None


def test_asking_for_the_judge_without_its_key_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    data = make_judge_data(tmp_path)
    fdb, _ = make_fdb_checkout(tmp_path)
    argv = ["evaluate", "--root", str(data), "--stage", "judge", "--fdb-repo", str(fdb)]
    argv += ["--judge-api-key-env", ENV, "--run-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    assert f"stage judge cannot run: needs ${ENV}" in caplog.text
    assert main([*argv[:-4], "--judge-attempts", "0"]) == 2
    assert "attempts >= 1" in caplog.text
    pasted = "sk-proj-" + "x" * 20  # the key itself where its variable's name belongs
    assert main([*argv[:-4], "--judge-api-key-env", pasted]) == 2
    assert "NAME of the environment variable" in caplog.text and pasted not in caplog.text


def test_prosody_requires_praat_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(prosody.metadata, "version", absent)
    reason = prosody.prosody_requirement()
    assert reason is not None and reason.startswith("praat-parselmouth (pip install")
    monkeypatch.setattr(prosody.metadata, "version", lambda name: "0.4.7")
    assert prosody.prosody_requirement() == prosody.NOT_BUILT


def test_prosody_asked_for_is_a_usage_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_judge_data(tmp_path)
    argv = ["evaluate", "--root", str(data), "--stage", "prosody", "--run-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "stage prosody cannot run: needs" in caplog.text


def test_interruption_tor_and_latency(tmp_path: Path) -> None:
    data = make_judge_data(tmp_path)
    stage, ctx = RulesStage(), EvalContext(EvalSettings(root=data))
    took = Sample(V10_TASK, "1", data / V10_TASK / "1")
    silent = Sample(V10_TASK, "2", data / V10_TASK / "2")
    assert stage.applies(took)
    assert stage.input_names(took) == ["output.json", "interrupt.json"]
    _, values = stage.compute(ctx, took)
    assert values["tor"] == 1 and values["latency_s"] == pytest.approx(6.1 - 5.8)
    _, values = stage.compute(ctx, silent)
    assert values == {"tor": 0, "latency_s": None}
    metrics = stage.aggregate(
        ctx, V10_TASK, [{"tor": 1, "latency_s": 0.3}, {"tor": 0, "latency_s": None}]
    )
    assert metrics["tor"] == 0.5 and metrics["latency"] == 0.3
    # the user still speaking when the model starts: latency 0, as FDB clamps it
    (data / V10_TASK / "1" / "interrupt.json").write_text(
        json.dumps([{"context": "", "interrupt": "", "timestamp": [5.0, 6.5]}])
    )
    assert stage.compute(ctx, took)[1]["latency_s"] == 0.0

"""``python -m pipeline evaluate``: choose the stages, run them over the samples, aggregate.

Default stages: every stage this version has whose requirements are present (a missing one is
named). ``stats`` alone re-aggregates from the per-sample files that are still current.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from pipeline.dataset.discovery import Sample, discover
from pipeline.evaluate.asr_client import asr_requirement, default_python
from pipeline.evaluate.fdb_repo import ICC_TRUTH_SHA256, FdbRepoError, load_truth
from pipeline.evaluate.judge_replies import JudgeStop
from pipeline.evaluate.judge_sources import SOURCES_SHA256, JudgePrompts, load_prompts
from pipeline.evaluate.prosody import prosody_requirement
from pipeline.evaluate.sample_run import SampleResult, run_sample
from pipeline.evaluate.scores import Scores, table_lines, write_scores
from pipeline.evaluate.settings import STAGE_NAMES, EvalSettings
from pipeline.evaluate.stage_asr import AsrStage
from pipeline.evaluate.stage_judge import JudgeStage
from pipeline.evaluate.stage_rules import RulesStage
from pipeline.evaluate.stage_timing import TimingStage
from pipeline.evaluate.stages import EvalContext, Stage
from pipeline.evaluate.vad_model import VadModelError, model_bytes

log = logging.getLogger("pipeline.evaluate")
STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (AsrStage(), TimingStage(), RulesStage(), JudgeStage())
}
LATER = "not in this version of fdb-pipeline (issue 10's second half)"
EXTRA = "pip install 'fdb-pipeline[eval]'"


class EvalUsageError(ValueError):
    """A stage was asked for that cannot run here; the message says why."""


def _absent(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def judge_requirement(settings: EvalSettings) -> str | None:
    """What the judge needs that this run lacks: the SDK, FDB's instructions and the key."""
    if _absent("openai"):
        return f"openai ({EXTRA})"
    if settings.fdb_repo is None:
        return "--fdb-repo (FDB's checkout holds the judges' instructions)"
    env = settings.judge.api_key_env
    if not os.environ.get(env):
        return f"${env} (the judge's API key; or name another variable with --judge-api-key-env)"
    return None


def stage_requirement(name: str, settings: EvalSettings) -> str | None:
    """What stage ``name`` needs that is not here (None: it can run)."""
    if name == "judge":
        return judge_requirement(settings)
    if name == "prosody":
        return prosody_requirement()
    if name not in STAGES and name != "stats":
        return LATER
    if name == "asr":
        python = settings.asr_python or default_python()
        return asr_requirement(python, settings.asr_model, explicit=name in settings.stages)
    wanted = {"timing": ("onnxruntime",), "rules": ("onnxruntime", "scipy")}.get(name, ())
    absent = _absent(*wanted)
    if absent:
        return f"{', '.join(absent)} ({EXTRA})"
    if name in ("timing", "rules"):
        try:
            model_bytes()
        except VadModelError as exc:
            return str(exc)
    return None


def choose_stages(settings: EvalSettings) -> tuple[list[str], dict[str, str]]:
    """The stages to run, and those left out with the reason (the default leaves out every
    stage whose requirements are absent; asking for one of them is a usage error)."""
    requested = settings.stages
    for name in requested:
        if name not in STAGE_NAMES:
            raise EvalUsageError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
        need = stage_requirement(name, settings)
        if need is not None:
            raise EvalUsageError(f"stage {name} cannot run: needs {need}")
    if requested:
        return [n for n in STAGE_NAMES if n in requested], {}
    chosen, not_run = [], {}
    for name in STAGE_NAMES:
        need = stage_requirement(name, settings)
        if need is None:
            chosen.append(name)
        else:
            not_run[name] = need if need == LATER else f"needs {need}"
            log.warning("stage %s not run: %s", name, not_run[name])
    return chosen, not_run


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")


def evaluate(
    settings: EvalSettings,
    truth_sha256: str = ICC_TRUTH_SHA256,
    judge_sha256: Mapping[str, str] = SOURCES_SHA256,
) -> tuple[int, Scores]:
    """Run the chosen stages; the exit code is 1 when any sample failed, else 0. Tests pass the
    digests of their stand-in FDB files."""
    chosen, not_run = choose_stages(settings)
    samples = discover(settings.root, settings.tasks, settings.prefix, settings.output_root)
    truth = load_truth(settings.fdb_repo, truth_sha256) if settings.fdb_repo else None
    ctx = EvalContext(settings, truth, _prompts(settings, chosen, judge_sha256))
    run_dir = settings.run_dir or default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    values: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    failed = 0
    with (run_dir / "eval-samples.jsonl").open("a", encoding="utf-8") as records:
        for name, stage in STAGES.items():
            if _walks(name, chosen, not_run, ctx):
                work = [s for s in samples if stage.applies(s)]
                try:
                    failed += _run_stage(stage, ctx, work, name in chosen, records, values)
                finally:
                    ctx.close()  # the ASR worker (and its model) go when their stage is done
    scores: Scores = {}
    if "stats" in chosen:
        scores = aggregate(ctx, values)
        write_scores(run_dir / "scores.json", scores)
        for line in table_lines(scores, settings.mode):
            print(line)
        log.info("scores: %s; per sample: %s", run_dir / "scores.json", records.name)
    for name, reason in not_run.items():
        print(f"{name} skipped: {reason}")
    return (1 if failed else 0), scores


def _prompts(
    settings: EvalSettings, chosen: list[str], digests: Mapping[str, str]
) -> JudgePrompts | None:
    """FDB's judge instructions: required when the judge runs; with ``stats`` alone, read if
    the checkout has them (the judge's files are current only for the same instructions)."""
    if settings.fdb_repo is None:
        return None
    if "judge" in chosen:
        return load_prompts(settings.fdb_repo, digests)
    if "stats" in chosen:
        with contextlib.suppress(FdbRepoError):
            return load_prompts(settings.fdb_repo, digests)
    return None


def _walks(name: str, chosen: list[str], not_run: dict[str, str], ctx: EvalContext) -> bool:
    """Whether a stage goes over its samples: to compute them, or (``stats``) to read the files
    it made before (not a stage left out by default, nor one whose files only feed later stages,
    nor the judge without its instructions)."""
    if name in chosen:
        return True
    if "stats" not in chosen or name in not_run or not STAGES[name].scored:
        return False
    return name != "judge" or ctx.prompts is not None


def _run_stage(
    stage: Stage,
    ctx: EvalContext,
    samples: list[Sample],
    compute: bool,
    records: TextIO,
    values: dict[str, dict[str, list[dict[str, Any]]]],
) -> int:
    """One stage over its samples; the number that failed. A :class:`JudgeStop` (the endpoint
    refuses every request) ends the stage at once: its sample and the rest are failed."""
    failed = 0
    stop: str | None = None
    for sample in samples:
        if stop is not None:
            result = SampleResult(sample, stage.name, "failed", error=f"stage stopped: {stop}")
        else:
            try:
                result = run_sample(stage, ctx, sample, compute)
            except JudgeStop as exc:
                stop = str(exc)
                log.error("stage %s stopped: %s", stage.name, stop)
                result = SampleResult(sample, stage.name, "failed", error=stop)
        records.write(json.dumps(result.record()) + "\n")
        records.flush()
        failed += _note(result, values)
    return failed


def _note(result: SampleResult, values: dict[str, dict[str, list[dict[str, Any]]]]) -> int:
    if result.values is not None:
        values[result.sample.task][result.stage].append(result.values)
        return 0
    level = logging.ERROR if result.status == "failed" else logging.WARNING
    log.log(level, "%s %s: %s: %s", result.stage, result.sample.key, result.status, result.error)
    return int(result.status == "failed")


def aggregate(ctx: EvalContext, values: dict[str, dict[str, list[dict[str, Any]]]]) -> Scores:
    scores: Scores = {}
    for task, by_stage in values.items():
        metrics: dict[str, Any] = {"mode": ctx.settings.mode}
        for name, stage_values in by_stage.items():
            metrics.update(STAGES[name].aggregate(ctx, task, stage_values))
        scores[task] = metrics
    return scores

"""``python -m pipeline evaluate``: choose the stages, run them over the samples, aggregate.

Default stages: every stage this version has whose requirements are present (a missing one is
named). ``stats`` alone re-aggregates from the per-sample files that are still current.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.dataset.discovery import discover
from pipeline.evaluate.asr_client import asr_requirement, default_python
from pipeline.evaluate.fdb_repo import ICC_TRUTH_SHA256, load_truth
from pipeline.evaluate.sample_run import SampleResult, run_sample
from pipeline.evaluate.scores import Scores, table_lines, write_scores
from pipeline.evaluate.settings import STAGE_NAMES, EvalSettings
from pipeline.evaluate.stage_asr import AsrStage
from pipeline.evaluate.stage_rules import RulesStage
from pipeline.evaluate.stage_timing import TimingStage
from pipeline.evaluate.stages import EvalContext, Stage
from pipeline.evaluate.vad_model import VadModelError, model_bytes

log = logging.getLogger("pipeline.evaluate")
STAGES: dict[str, Stage] = {
    stage.name: stage for stage in (AsrStage(), TimingStage(), RulesStage())
}
LATER = "not in this version of fdb-pipeline (issue 10's second half)"


class EvalUsageError(ValueError):
    """A stage was asked for that cannot run here; the message says why."""


def stage_requirement(name: str, settings: EvalSettings) -> str | None:
    """What stage ``name`` needs that is not installed here (None: it can run)."""
    if name not in STAGES and name != "stats":
        return LATER
    if name == "asr":
        python = settings.asr_python or default_python()
        return asr_requirement(python, settings.asr_model, explicit=name in settings.stages)
    wanted = {"timing": ("onnxruntime",), "rules": ("onnxruntime", "scipy")}.get(name, ())
    absent = [m for m in wanted if importlib.util.find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} (pip install 'fdb-pipeline[eval]')"
    if name in ("timing", "rules"):
        try:
            model_bytes()
        except VadModelError as exc:
            return str(exc)
    return None


def choose_stages(settings: EvalSettings) -> list[str]:
    requested = settings.stages
    for name in requested:
        if name not in STAGE_NAMES:
            raise EvalUsageError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
        need = stage_requirement(name, settings)
        if need is not None:
            raise EvalUsageError(f"stage {name} cannot run: needs {need}")
    if requested:
        return [n for n in STAGE_NAMES if n in requested]
    chosen = []
    for name in STAGE_NAMES:
        need = stage_requirement(name, settings)
        if need is None:
            chosen.append(name)
        else:
            log.warning("stage %s not run: %s", name, need if need == LATER else f"needs {need}")
    return chosen


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")


def evaluate(settings: EvalSettings, truth_sha256: str = ICC_TRUTH_SHA256) -> tuple[int, Scores]:
    """Run the chosen stages; the exit code is 1 when any sample failed, else 0."""
    chosen = choose_stages(settings)
    samples = discover(settings.root, settings.tasks, settings.prefix)
    truth = load_truth(settings.fdb_repo, truth_sha256) if settings.fdb_repo else None
    ctx = EvalContext(settings, truth)
    run_dir = settings.run_dir or default_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    values: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    failed = 0
    with (run_dir / "eval-samples.jsonl").open("a", encoding="utf-8") as records:
        for name, stage in STAGES.items():
            compute = name in chosen
            if not compute and ("stats" not in chosen or not stage.scored):
                continue
            try:
                for sample in (s for s in samples if stage.applies(s)):
                    result = run_sample(stage, ctx, sample, compute)
                    records.write(json.dumps(result.record()) + "\n")
                    records.flush()
                    failed += _note(result, values)
            finally:
                ctx.close()  # the ASR worker (and its model) go when their stage is done
    scores: Scores = {}
    if "stats" in chosen:
        scores = aggregate(ctx, values)
        write_scores(run_dir / "scores.json", scores)
        for line in table_lines(scores, settings.mode):
            print(line)
        log.info("scores: %s; per sample: %s", run_dir / "scores.json", records.name)
    return (1 if failed else 0), scores


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

"""The ``rules`` stage (v1.0): pause handling, smooth turn-taking, backchannel and the user
interruption's TOR and latency, per sample (:mod:`pipeline.evaluate.rules`), averaged per task
as FDB's scripts average them. The interruption's turn is taken by the same rule as the
turn-taking's; its latency runs from the interruption's end (``interrupt.json[0].timestamp[1]``,
0 when negative) and, as in FDB, counts only samples that took the turn.

Backchannel is scored in both readings of a 24 kHz ``output.wav``: ``fdb-compat`` (its samples
taken as 16 kHz, as FDB's script does: every time x1.5) and ``corrected`` (resampled to 16 kHz
first). The task's ``tor``/``freq``/``jsd`` are those of the run's mode; both stay beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset.discovery import Sample
from pipeline.evaluate import rules
from pipeline.evaluate.audio import Wave, read_wave
from pipeline.evaluate.sample_files import sample_file
from pipeline.evaluate.settings import MODES
from pipeline.evaluate.stage_timing import vad_config
from pipeline.evaluate.stages import INTERRUPTION_TASK, EvalContext, Metrics, Stage, mean
from pipeline.evaluate.vad import OnnxVad, segments_in_seconds, speech_segments
from pipeline.evaluate.words import EvalInputError, Word, read_json, read_words

OUT_NAME = "eval_rules.json"
PAUSE_TASKS = ("candor_pause_handling", "synthetic_pause_handling")
TURN_TASK = "candor_turn_taking"
BACKCHANNEL_TASK = "icc_backchannel"
# the turn file each latency is measured from, and where in it the user's turn ends
TURN_END = {TURN_TASK: ("turn_taking.json", 0), INTERRUPTION_TASK: ("interrupt.json", 1)}
RULE_TASKS = (*PAUSE_TASKS, TURN_TASK, BACKCHANNEL_TASK, INTERRUPTION_TASK)
THRESHOLDS = {
    "turn_min_s": rules.TURN_MIN_S,
    "turn_max_words": rules.TURN_MAX_WORDS,
    "backchannel_max_s": rules.BACKCHANNEL_MAX_S,
    "backchannel_max_words": rules.BACKCHANNEL_MAX_WORDS,
    "jsd_bin_s": rules.JSD_BIN_S,
    "jsd_epsilon": rules.JSD_EPSILON,
}


def backchannel_segments(vad: OnnxVad, wave: Wave, mode: str) -> list[tuple[float, float]]:
    """VAD segments in seconds as FDB's backchannel script gets them, in either reading."""
    samples = wave.samples if mode == "fdb-compat" else wave.at_vad_rate()
    segments = speech_segments(vad.probabilities(samples), samples.shape[0])
    return segments_in_seconds(segments, samples.shape[0])


class RulesStage(Stage):
    name = "rules"

    def applies(self, sample: Sample) -> bool:
        return sample.task in RULE_TASKS and sample.prefix == ""

    def missing(self, ctx: EvalContext, sample: Sample) -> str | None:
        if sample.task == BACKCHANNEL_TASK and ctx.truth is None:
            return "--fdb-repo (FDB's icc_gt_distribution.json, the backchannel ground truth)"
        return None

    def output_path(self, sample: Sample) -> Path:
        return sample_file(sample, OUT_NAME)

    def input_names(self, sample: Sample) -> list[str]:
        if sample.task in TURN_END:
            return ["output.json", TURN_END[sample.task][0]]
        if sample.task == BACKCHANNEL_TASK:
            return ["output.json", "output.wav"]
        return ["output.json"]

    def config(self, ctx: EvalContext, sample: Sample) -> dict[str, Any]:
        config: dict[str, Any] = {"task": sample.task, "thresholds": THRESHOLDS}
        if sample.task == BACKCHANNEL_TASK:
            config["vad"] = vad_config()
            config["truth_sha256"] = ctx.truth.sha256 if ctx.truth else None
        return config

    def compute(self, ctx: EvalContext, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        words = read_words(sample_file(sample, "output.json"))
        if sample.task in PAUSE_TASKS:
            return {}, {"tor": rules.took_turn(words)}
        if sample.task in TURN_END:
            name, index = TURN_END[sample.task]
            turn = read_json(sample.folder / name, "the dataset")
            try:
                turn_end = float(turn[0]["timestamp"][index])
            except (LookupError, TypeError, ValueError) as exc:
                raise EvalInputError(
                    f"{sample.folder / name} has no [{{'timestamp': [...]}}] with the turn's end"
                    f" at index {index}"
                ) from exc
            latency = rules.turn_latency(words, turn_end)
            return {}, {"tor": rules.took_turn(words), "latency_s": latency}
        return {}, self._backchannel(ctx, sample, words)

    def _backchannel(self, ctx: EvalContext, sample: Sample, words: list[Word]) -> dict[str, Any]:
        assert ctx.truth is not None  # missing() names --fdb-repo first
        truth = ctx.truth.by_sample.get(sample.sample_id)
        if truth is None:
            raise EvalInputError(
                f"{sample.folder}: ICC sample id {sample.sample_id!r} is not in {ctx.truth.path}"
                " (its ids are 0-54); the icc_backchannel folders must keep FDB's ids"
            )
        wave = read_wave(sample_file(sample, "output.wav"))
        values: dict[str, Any] = {"rate": wave.rate}
        for mode in MODES:
            segments = backchannel_segments(ctx.vad, wave, mode)
            scored = rules.backchannel(segments, words, wave.duration_s, truth)
            values[mode] = {
                "tor": scored.tor,
                "freq": scored.freq,
                "jsd": scored.jsd,
                "candidates": scored.candidates,
            }
        return values

    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        metrics: Metrics = {"rules_n": len(values)}
        if task == BACKCHANNEL_TASK:
            for mode in MODES:
                suffix = mode.replace("-", "_")
                for key in ("tor", "freq", "jsd"):
                    metrics[f"{key}_{suffix}"] = mean([v[mode][key] for v in values])
                    if mode == ctx.settings.mode:
                        metrics[key] = metrics[f"{key}_{suffix}"]
            return metrics
        metrics["tor"] = mean([v["tor"] for v in values])
        if task in TURN_END:
            took = [v["latency_s"] for v in values if v["latency_s"] is not None]
            metrics["latency"] = mean(took)
        return metrics

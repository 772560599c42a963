"""The ``judge`` stage: FDB's LLM judges, per sample, with the replies kept.

- v1.5 (every task): the behaviour judge (``gpt-4o-2024-08-06``, seed 1; FDB adds 1 to the
  seed each time it asks again) labels how the model handled the overlap, from the four ASR
  files; ``content_tag.json`` holds the parsed reply, as FDB writes it. Per task: each tag's
  share of all the task's ``C`` tags.
- v1.0 ``synthetic_user_interruption``: when the model took the turn (FDB's rule, the ``rules``
  stage's TOR), the interruption judge (``gpt-4-turbo``, seed 0 every time) rates its response
  0-5 from ``interrupt.json`` and ``output.json``'s text; ``rating.json`` holds
  ``{"analysis", "rating"}``. (Samples that did not take the turn are asked nothing; their
  ``rating.json`` holds only this pipeline's record, which FDB's scripts never read.)
  Per task: the mean rating of the samples that took the turn.

A reply that does not parse is asked again at most ``reasks`` times (FDB asks forever), then
the sample fails with every raw reply in its error. Each sample's values keep the model, seed,
request sha256, raw reply and number of asks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.dataset.discovery import TASKS_V15, Sample
from pipeline.evaluate import rules
from pipeline.evaluate.judge_replies import (
    JudgeReplyError,
    MalformedReply,
    behaviour_message,
    behaviour_of,
    interruption_message,
    rating_of,
)
from pipeline.evaluate.judge_sources import BEHAVIOUR_FIELDS
from pipeline.evaluate.sample_files import sample_file
from pipeline.evaluate.stages import INTERRUPTION_TASK, EvalContext, Metrics, Stage, mean
from pipeline.evaluate.words import EvalInputError, read_json, read_words

BEHAVIOUR = {"model": "gpt-4o-2024-08-06", "seed": 1, "seed_step": 1, "file": "content_tag.json"}
INTERRUPTION = {"model": "gpt-4-turbo", "seed": 0, "seed_step": 0, "file": "rating.json"}
FILE_OF = {
    "input_clean": "clean_input.json",
    "input_noisy": "input.json",
    "output_clean": "clean_output.json",
    "output_noisy": "output.json",
}
ASR_MADE_BY = "the ASR stage (FDB's get_transcript/asr.py format)"
REPLY_SHOWN = 2000  # characters of each raw reply kept in a failed sample's error


def _spec(sample: Sample) -> dict[str, Any]:
    return INTERRUPTION if sample.task == INTERRUPTION_TASK else BEHAVIOUR


def _interrupt(sample: Sample) -> tuple[str, str]:
    path = sample.folder / "interrupt.json"
    data = read_json(path, "the dataset")
    try:
        return str(data[0]["context"]), str(data[0]["interrupt"])
    except (LookupError, TypeError) as exc:
        raise EvalInputError(f"{path} has no [{{'context': ..., 'interrupt': ...}}]") from exc


class JudgeStage(Stage):
    name = "judge"

    def applies(self, sample: Sample) -> bool:
        return (sample.task in TASKS_V15 or sample.task == INTERRUPTION_TASK) and not sample.prefix

    def missing(self, ctx: EvalContext, sample: Sample) -> str | None:
        if ctx.prompts is None:
            return "--fdb-repo (FDB's judge instructions)"
        return None

    def output_path(self, sample: Sample) -> Path:
        return sample_file(sample, str(_spec(sample)["file"]))

    def input_names(self, sample: Sample) -> list[str]:
        if sample.task == INTERRUPTION_TASK:
            return ["output.json", "interrupt.json"]
        return [FILE_OF[name] for name in BEHAVIOUR_FIELDS]

    def model(self, ctx: EvalContext, sample: Sample) -> str:
        return ctx.settings.judge.model or str(_spec(sample)["model"])

    def config(self, ctx: EvalContext, sample: Sample) -> dict[str, Any]:
        assert ctx.prompts is not None
        spec = _spec(sample)
        behaviour = spec is BEHAVIOUR
        return {
            "judge": "behaviour" if behaviour else "interruption",
            "model": self.model(ctx, sample),
            "seed": spec["seed"],
            "endpoint": ctx.settings.judge.base_url,
            "prompt_sha256": (
                ctx.prompts.behaviour_sha256 if behaviour else ctx.prompts.interruption_sha256
            ),
        }

    def compute(self, ctx: EvalContext, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        assert ctx.prompts is not None
        if sample.task == INTERRUPTION_TASK:
            words = read_words(sample_file(sample, "output.json"))
            if not rules.took_turn(words):
                return {}, {"took_turn": 0, "rating": None}
            context, interrupt = _interrupt(sample)
            text = read_json(sample_file(sample, "output.json"), ASR_MADE_BY).get("text", "")
            user = interruption_message(ctx.prompts, context, interrupt, str(text))
            rating = ctx.prompts.rating
            system = ctx.prompts.interruption_system
            body, values = self._ask(ctx, sample, system, user, lambda r: rating_of(r, rating))
            return body, {"took_turn": 1, "rating": body["rating"], **values}
        asr = {n: read_json(sample_file(sample, FILE_OF[n]), ASR_MADE_BY) for n in BEHAVIOUR_FIELDS}
        if not all(isinstance(a, dict) for a in asr.values()):
            raise EvalInputError(f"{sample.folder}: an ASR file is not a JSON object")
        user = behaviour_message(ctx.prompts, asr)
        system = ctx.prompts.behaviour_system
        body, values = self._ask(ctx, sample, system, user, behaviour_of)
        return body, {"behaviour": body["behaviour"], **values}

    def _ask(
        self,
        ctx: EvalContext,
        sample: Sample,
        system: str,
        user: str,
        parse: Callable[[str], dict[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        from pipeline.evaluate.judge_client import JudgeRequest

        spec = _spec(sample)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        replies: list[str] = []
        for ask in range(ctx.settings.judge.reasks + 1):
            seed = int(spec["seed"]) + ask * int(spec["seed_step"])
            request = JudgeRequest(self.model(ctx, sample), messages, seed)
            reply = ctx.judge.masked(ctx.judge.ask(request))
            replies.append(reply)
            try:
                body = parse(reply)
            except MalformedReply as exc:
                problem = str(exc)
                continue
            values = {
                "model": request.model,
                "seed": seed,
                "request_sha256": request.sha256(),
                "raw_reply": reply,
                "asks": ask + 1,
            }
            return body, values
        shown = " | ".join(repr(r[:REPLY_SHOWN]) for r in replies)
        raise JudgeReplyError(
            f"{len(replies)} replies of {self.model(ctx, sample)} did not parse ({problem});"
            f" raw replies: {shown}"
        )

    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        if task == INTERRUPTION_TASK:
            rated = [float(v["rating"]) for v in values if v.get("rating") is not None]
            return {"judge": mean(rated), "judge_n": len(rated)}
        tags = Counter(t for v in values for t in v["behaviour"] if t.startswith("C"))
        total = sum(tags.values())
        metrics: Metrics = {"behaviour_n": len(values)}
        for tag in sorted(tags):
            metrics[f"behaviour_{tag}"] = tags[tag] / total
        return metrics

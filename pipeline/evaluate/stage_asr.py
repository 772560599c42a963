"""The ``asr`` stage: FDB's word files from the wavs, by the NeMo worker in ``.venv-asr``.

Per pass of a sample: ``{prefix}output.wav`` -> ``{prefix}output.json`` for every task, and for
v1.5 ``{prefix}input.wav`` -> ``{prefix}input.json`` beside it - so both passes give all four
files FDB's behaviour evaluation reads, ``clean_output.json`` included (FDB's own script writes
the clean pass's transcript over ``output.json``). For the v1.0 interruption task only what
follows the interruption is transcribed, its times shifted back (see :mod:`asr_worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset.discovery import TASKS_V15, Sample
from pipeline.evaluate.asr_client import AsrJob, model_identity
from pipeline.evaluate.sample_files import sample_file
from pipeline.evaluate.stages import INTERRUPTION_TASK, EvalContext, Metrics, Stage
from pipeline.evaluate.words import EvalInputError, read_json

INTERRUPT_JSON = "interrupt.json"
# bump when the documents written change
FORMAT = 1


def interruption_end(folder: Path) -> float:
    """The end of the interruption, ``interrupt.json[0]["timestamp"][1]``, as FDB reads it."""
    meta = read_json(folder / INTERRUPT_JSON, "the dataset")
    try:
        return float(meta[0]["timestamp"][1])
    except (LookupError, TypeError, ValueError) as exc:
        raise EvalInputError(
            f"{folder / INTERRUPT_JSON} has no [{{'timestamp': [START, END]}}]"
        ) from exc


class AsrStage(Stage):
    name = "asr"
    scored = False

    def applies(self, sample: Sample) -> bool:
        return True

    def wav_names(self, sample: Sample) -> list[str]:
        """The wavs this pass transcribes, each to the same name with ``.json``."""
        names = [f"{sample.prefix}output.wav"]
        return [f"{sample.prefix}input.wav", *names] if sample.task in TASKS_V15 else names

    def output_path(self, sample: Sample) -> Path:
        return sample_file(sample, f"{sample.prefix}output.json")

    def side_outputs(self, sample: Sample) -> list[Path]:
        return (
            [sample_file(sample, f"{sample.prefix}input.json")] if sample.task in TASKS_V15 else []
        )

    def input_names(self, sample: Sample) -> list[str]:
        names = self.wav_names(sample)
        return [*names, INTERRUPT_JSON] if sample.task == INTERRUPTION_TASK else names

    def config(self, ctx: EvalContext, sample: Sample) -> dict[str, Any]:
        crop = "after interrupt.json[0].timestamp[1]" if sample.task == INTERRUPTION_TASK else None
        return {"model": model_identity(ctx.settings.asr_model), "crop": crop, "format": FORMAT}

    def compute(self, ctx: EvalContext, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        bodies, values = self.compute_files(ctx, sample)
        return bodies[self.output_path(sample)], values

    def compute_files(
        self, ctx: EvalContext, sample: Sample
    ) -> tuple[dict[Path, dict[str, Any]], dict[str, Any]]:
        crop = interruption_end(sample.folder) if sample.task == INTERRUPTION_TASK else None
        wavs = self.wav_names(sample)
        jobs = [
            AsrJob(sample_file(sample, n), crop if n.endswith("output.wav") else None) for n in wavs
        ]
        docs = ctx.asr.transcribe(jobs)
        bodies = {
            sample_file(sample, Path(name).with_suffix(".json").name): doc
            for name, doc in zip(wavs, docs, strict=True)
        }
        words = {path.name: len(doc["chunks"]) for path, doc in bodies.items()}
        made_by = {"device": ctx.asr.device, "versions": ctx.asr.versions}
        return bodies, {"words": words, "crop_after_s": crop, **made_by}

    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        return {"asr_n": len(values)}

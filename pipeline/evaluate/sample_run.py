"""One stage on one sample: skip it if its file is current, else compute and write it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pipeline.dataset.discovery import Sample
from pipeline.evaluate.asr_client import AsrError
from pipeline.evaluate.fdb_repo import FdbRepoError
from pipeline.evaluate.judge_replies import JudgeReplyError, JudgeRequestError
from pipeline.evaluate.provenance import current_values, stamp_for, sweep_partials, write_result
from pipeline.evaluate.sample_files import sample_file
from pipeline.evaluate.stages import EvalContext, Stage
from pipeline.evaluate.vad_model import VadModelError
from pipeline.evaluate.words import EvalInputError
from pipeline.results.locks import SampleLock

# Who writes each file a stage may read (for "X is missing" errors)
ASR_WRITES = "the ASR stage (`python -m pipeline evaluate --stage asr`)"
WRITTEN_BY = {
    "output.wav": "the inference (`python -m pipeline bench` or `infer`)",
    **dict.fromkeys(
        ("output.json", "input.json", "clean_input.json", "clean_output.json"), ASR_WRITES
    ),
}
SAMPLE_ERRORS = (
    EvalInputError,
    VadModelError,
    FdbRepoError,
    AsrError,
    OSError,
    JudgeReplyError,
    JudgeRequestError,
)


@dataclass
class SampleResult:
    sample: Sample
    stage: str
    status: str  # done | kept | failed | skipped | held | not_current
    values: dict[str, Any] | None = None
    error: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "task": self.sample.task,
            "sample": self.sample.sample_id,
            "prefix": self.sample.prefix,
            "stage": self.stage,
            "status": self.status,
            "error": self.error,
            "values": self.values,
            "versions": versions(),
        }


@functools.cache
def versions() -> dict[str, str]:
    found = {}
    for dist in ("fdb-pipeline", "numpy", "onnxruntime", "scipy", "soundfile", "openai"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "absent"
    return found


def run_sample(stage: Stage, ctx: EvalContext, sample: Sample, compute: bool) -> SampleResult:
    """``compute`` False (``stats`` alone): only read a current file, never write one."""
    need = stage.missing(ctx, sample)
    if need is not None:
        return SampleResult(sample, stage.name, "skipped", error=f"needs {need}")
    files = {name: sample_file(sample, name) for name in stage.input_names(sample)}
    for name, file in files.items():
        if not file.is_file():
            made_by = WRITTEN_BY.get(name, "the dataset")
            error = f"{file} is missing; it is written by {made_by}"
            return SampleResult(sample, stage.name, "failed", error=error)
    path = stage.output_path(sample)
    config = stage.config(ctx, sample)
    stamp = stamp_for(stage.name, files, config)
    values = current_values(path, stamp)
    sides = stage.side_outputs(sample)
    if values is not None and all(current_values(p, stamp) is not None for p in sides):
        return SampleResult(sample, stage.name, "kept", values)
    if not compute:
        error = f"{path.name} is absent or was made from other inputs; run --stage {stage.name}"
        return SampleResult(sample, stage.name, "not_current", error=error)
    with SampleLock(sample, sample.output_folder / f".eval-{stage.name}.lock") as held:
        if not held:
            error = "another evaluation holds this sample"
            return SampleResult(sample, stage.name, "held", error=error)
        for made in (*sides, path):
            sweep_partials(made)
        try:
            bodies, values = stage.compute_files(ctx, sample)
        except SAMPLE_ERRORS as exc:
            return SampleResult(sample, stage.name, "failed", error=str(exc))
        for made, body in bodies.items():  # the output last: it marks the sample done
            write_result(made, body, stamp, values, versions())
    return SampleResult(sample, stage.name, "done", values)

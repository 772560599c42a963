"""The ``timing`` stage (v1.5): FDB's ``latency_intervals.json`` per sample, and our reduction
of it (see :mod:`pipeline.evaluate.timing`) averaged per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.dataset.discovery import TASKS_V15, Sample
from pipeline.evaluate.audio import read_wave
from pipeline.evaluate.intervals import MODEL_MERGE_GAP_S, USER_MERGE_GAP_S
from pipeline.evaluate.resample import LOWPASS_FILTER_WIDTH, ROLLOFF
from pipeline.evaluate.sample_files import sample_file
from pipeline.evaluate.stages import EvalContext, Metrics, Stage, mean
from pipeline.evaluate.timing import latency_intervals, overlap_window, reduce_sample
from pipeline.evaluate.vad import VadParams
from pipeline.evaluate.vad_model import ONNX_SHA256, SILERO_VERSION
from pipeline.evaluate.words import read_json

OUT_NAME = "latency_intervals.json"


def vad_config() -> dict[str, Any]:
    """The VAD and resampler a result was made with (part of every VAD stage's stamp)."""
    return {
        "silero_vad": SILERO_VERSION,
        "onnx_sha256": ONNX_SHA256,
        "params": vars(VadParams()),
        "resampler": {"kind": "sinc_hann", "width": LOWPASS_FILTER_WIDTH, "rolloff": ROLLOFF},
    }


class TimingStage(Stage):
    name = "timing"

    def applies(self, sample: Sample) -> bool:
        return sample.task in TASKS_V15 and sample.prefix == ""

    def output_path(self, sample: Sample) -> Path:
        return sample_file(sample, OUT_NAME)

    def input_names(self, sample: Sample) -> list[str]:
        names = ["input.wav", "output.wav"]
        return [*names, "metadata.json"] if (sample.folder / "metadata.json").is_file() else names

    def config(self, ctx: EvalContext, sample: Sample) -> dict[str, Any]:
        merge = {"user_gap_s": USER_MERGE_GAP_S, "model_gap_s": MODEL_MERGE_GAP_S}
        return {"vad": vad_config(), "merge": merge, "reduction": 1}

    def compute(self, ctx: EvalContext, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        body = latency_intervals(
            ctx.vad,
            read_wave(sample_file(sample, "input.wav")),
            read_wave(sample_file(sample, "output.wav")),
        )
        meta_path = sample.folder / "metadata.json"
        window = None
        if meta_path.is_file():
            window = overlap_window(read_json(meta_path, "the dataset"))
        values: dict[str, Any] = {"overlap_window": window}
        if window is not None:
            stops, responses = body["latency_stop_list"], body["latency_resp_list"]
            values.update(reduce_sample(stops, responses, window))
        return body, values

    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        stops = [v["stop_latency_s"] for v in values if v.get("stop_latency_s") is not None]
        responses = [
            v["response_latency_s"] for v in values if v.get("response_latency_s") is not None
        ]
        return {
            "stop_latency": mean(stops),
            "stop_n": len(stops),
            "response_latency": mean(responses),
            "response_n": len(responses),
            "timing_n": len(values),
            "timing_reduction": "ours (FDB defines none)",
        }

"""Where a sample's files lie: the dataset's own (the input wavs, ``metadata.json``,
``interrupt.json``, ...) in its dataset folder; what this pipeline writes (the model's outputs,
the evaluation's files) in its output folder - the same folder, unless ``--output-root`` moved
the outputs out of a read-only dataset, as ``bench --output-root`` does."""

from __future__ import annotations

from pathlib import Path

from pipeline.dataset.discovery import Sample

# Every file name this pipeline writes into a sample's output folder, both passes
WRITTEN = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "clean_")
    for name in ("output.wav", "output_text.json", "output.json", "input.json")
) | frozenset(("latency_intervals.json", "eval_rules.json", "content_tag.json", "rating.json"))


def sample_file(sample: Sample, name: str) -> Path:
    """The path of the file ``name`` of ``sample``."""
    return (sample.output_folder if name in WRITTEN else sample.folder) / name

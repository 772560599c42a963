"""The synthetic dataset: the benchmark's own wav format (what `evaluate` reads) or mixed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from pipeline.dataset.synthesize import BENCHMARK_FORMAT, SynthSpec, synthesize

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def formats(root: Path) -> set[tuple[int, int, str]]:
    found = set()
    for wav in root.rglob("*.wav"):
        info = sf.info(str(wav))
        found.add((info.samplerate, info.channels, info.subtype))
    return found


def test_benchmark_formats_are_the_benchmarks_own(tmp_path: Path) -> None:
    n = synthesize(
        tmp_path, SynthSpec(tasks=("user_backchannel",), per_task=3, formats="benchmark")
    )
    assert n == 3
    assert formats(tmp_path) == {BENCHMARK_FORMAT}


def test_mixed_formats_cycle_rates_and_channels(tmp_path: Path) -> None:
    synthesize(tmp_path, SynthSpec(tasks=("user_backchannel",), per_task=3, formats="mixed"))
    found = formats(tmp_path)
    assert len(found) == 3 and any(channels == 2 for _, channels, _ in found)


def test_an_unknown_format_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="benchmark"):
        SynthSpec(formats="wav")

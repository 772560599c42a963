"""Make a small Full-Duplex-Bench-shaped dataset from synthetic speech (espeak-ng), for tests and
the demo. The real benchmark is distributed by its authors; this only mimics its layout:
``<out>/<task>/<id>/{input.wav, clean_input.wav, metadata.json}``, plus silences. Its wavs are
either as the benchmark ships them (16 kHz mono PCM16: what the evaluation reads) or in mixed
rates, channel counts and subtypes, so that every input path of the client gets exercised.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from pipeline.dataset.discovery import TASKS_V15
from pipeline.stream.protocol import Float32Array

SENTENCES = (
    "Could you tell me how to get to the train station from here?",
    "I was thinking about taking a trip to the mountains next weekend.",
    "What do you think is the best way to learn a new language?",
    "My sister just adopted a small dog and it keeps barking at night.",
    "Can you recommend a good book about the history of science?",
    "I am not sure whether I should cook dinner or order something.",
)
INTERRUPTIONS = ("Wait, actually, sorry.", "Hold on, one second.", "No, that is not it.")
# (rate, channels, subtype) cycled over samples: what the dataset may throw at the client
FORMATS = (
    (16_000, 1, "PCM_16"),
    (48_000, 2, "PCM_24"),
    (24_000, 1, "FLOAT"),
    (44_100, 1, "PCM_16"),
)
BENCHMARK_FORMAT = (16_000, 1, "PCM_16")  # Full-Duplex-Bench's own inputs
FORMAT_CHOICES = ("benchmark", "mixed")


class SynthError(RuntimeError):
    pass


@dataclass(frozen=True)
class SynthSpec:
    tasks: tuple[str, ...] = TASKS_V15
    per_task: int = 2
    seconds_trailing: float = 1.0
    include_silence: bool = True  # one all-silence sample in the first task
    formats: str = "mixed"  # "benchmark": 16 kHz mono PCM16 only; "mixed": cycle FORMATS

    def __post_init__(self) -> None:
        if self.formats not in FORMAT_CHOICES:
            raise ValueError(f"formats must be one of {FORMAT_CHOICES}, not {self.formats!r}")


def speak(text: str, voice: str = "en-us") -> tuple[Float32Array, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthError("espeak-ng is not installed; apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", "170", "-w", str(wav), text], check=True, capture_output=True
        )
        data, rate = sf.read(str(wav), dtype="float32")
    return np.asarray(data, dtype=np.float32), int(rate)


def _at_rate(x: Float32Array, rate: int, target: int) -> Float32Array:
    return x if rate == target else soxr.resample(x, rate, target).astype(np.float32)


def _write(path: Path, mono: Float32Array, rate: int, channels: int, subtype: str) -> None:
    data = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    sf.write(str(path), data, rate, subtype=subtype)


def make_sample(
    folder: Path,
    index: int,
    silence: bool = False,
    trailing_s: float = 1.0,
    fmt: tuple[int, int, str] | None = None,
) -> None:
    """One sample folder; ``fmt`` (rate, channels, subtype) defaults to the index's FORMATS."""
    rate, channels, subtype = FORMATS[index % len(FORMATS)] if fmt is None else fmt
    folder.mkdir(parents=True, exist_ok=True)
    if silence:
        clean = np.zeros(int(2.0 * rate), dtype=np.float32)
        noisy = clean.copy()
        window = [0.5, 1.0]
        context, interruption = "", ""
    else:
        context = SENTENCES[index % len(SENTENCES)]
        interruption = INTERRUPTIONS[index % len(INTERRUPTIONS)]
        speech, srate = speak(context)
        speech = 0.8 * _at_rate(speech, srate, rate)
        event, erate = speak(interruption, voice="en-gb")
        event = 0.6 * _at_rate(event, erate, rate)
        gap = np.zeros(int(0.3 * rate), dtype=np.float32)
        tail = np.zeros(int(trailing_s * rate), dtype=np.float32)
        clean = np.concatenate([speech, gap, np.zeros_like(event), tail])
        noisy = np.concatenate([speech, gap, event, tail])
        start = (speech.shape[0] + gap.shape[0]) / rate
        window = [round(start, 3), round(start + event.shape[0] / rate, 3)]
    _write(folder / "input.wav", noisy, rate, channels, subtype)
    _write(folder / "clean_input.wav", clean, rate, channels, subtype)
    meta = {
        "context_text": context,
        "current_turn_text": interruption,
        "timestamps": window,
        "synthetic": True,
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def synthesize(out: Path, spec: SynthSpec = SynthSpec()) -> int:
    """Write the dataset under ``out``; returns the number of samples made."""
    n = 0
    fmt = BENCHMARK_FORMAT if spec.formats == "benchmark" else None
    for t, task in enumerate(spec.tasks):
        for i in range(spec.per_task):
            silence = spec.include_silence and t == 0 and i == spec.per_task - 1
            index = t * spec.per_task + i
            make_sample(out / task / str(i), index, silence, spec.seconds_trailing, fmt)
            n += 1
    return n

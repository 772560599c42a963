"""What the evaluation costs per hour of audio on this machine (one core): the resampler, the
VAD, a timing sample (input + output, resampled, VAD'd, intervals) and the rules (a backchannel
sample in both readings; the pause and turn-taking rules read JSON only).

Audio: 60 s of espeak-ng speech with pauses (the fixtures' voices); each figure is the median
of --runs runs, scaled to one hour of audio. `make bench-eval`.

With `--asr-model PATH.nemo` (`make bench-eval` passes the tiny random model of `make tiny-asr`)
the asr stage's worker is measured too: its start (NeMo's import and the model load, once per
run) and one 60 s wav transcribed as the stage does it (a temporary PCM-16 copy, word
timestamps), on the device the worker picks (CUDA when there is one). The tiny model's cost is
the pipeline's floor, not parakeet's: that scales with the model (0.6 B parameters).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluate.asr_client import AsrJob, AsrWorker, default_python
from pipeline.evaluate.audio import Wave
from pipeline.evaluate.resample import resample
from pipeline.evaluate.rules import backchannel
from pipeline.evaluate.stage_rules import backchannel_segments
from pipeline.evaluate.timing import latency_intervals
from pipeline.evaluate.vad import OnnxVad, speech_segments
from pipeline.evaluate.words import Word
from tests.evaluate.fixtures import MODEL, USER, timeline

SECONDS = 60.0


def speech(rate: int) -> np.ndarray:
    lines = [
        (0.5 + 6.0 * i, text, USER if i % 2 else MODEL)
        for i, text in enumerate(
            [
                "Could you tell me how to get to the train station from here?",
                "Take the second street on the left, then walk straight on.",
                "I was thinking about taking a trip to the mountains next weekend.",
                "What do you think is the best way to learn a new language?",
                "My sister just adopted a small dog and it keeps barking at night.",
                "Can you recommend a good book about the history of science?",
                "I am not sure whether I should cook dinner or order something.",
                "Wait, actually, sorry, one more thing before you go.",
                "That sounds lovely, tell me more about it.",
                "Thanks a lot, that was really helpful.",
            ]
        )
    ]
    return timeline(rate, SECONDS, lines)


def per_hour(fn: Callable[[], object], audio_s: float, runs: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return median, median * 3600.0 / audio_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--asr-model", default=None, help="a .nemo file: measure the asr worker")
    args = parser.parse_args()
    at24, at16, at48 = speech(24_000), speech(16_000), speech(48_000)
    vad = OnnxVad()
    words = [Word("yeah", 0.5 + i, 0.8 + i) for i in range(0, 60, 3)]
    truth = list(np.full(300, 1 / 300))
    cases: list[tuple[str, Callable[[], object], float]] = [
        ("resample 24 -> 16 kHz", lambda: resample(at24, 24_000, 16_000), SECONDS),
        ("resample 48 -> 16 kHz", lambda: resample(at48, 48_000, 16_000), SECONDS),
        ("VAD (silero ONNX, 16 kHz)", lambda: vad.probabilities(at16), SECONDS),
        (
            "VAD + segments",
            lambda: speech_segments(vad.probabilities(at16), at16.shape[0]),
            SECONDS,
        ),
        (
            "timing sample (16 kHz in + 24 kHz out)",
            lambda: latency_intervals(vad, Wave(at16, 16_000), Wave(at24, 24_000)),
            2 * SECONDS,
        ),
        (
            "rules: backchannel sample, both readings",
            lambda: [
                backchannel(backchannel_segments(vad, Wave(at24, 24_000), m), words, SECONDS, truth)
                for m in ("fdb-compat", "corrected")
            ],
            SECONDS,
        ),
    ]
    cpu = os.cpu_count()
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu} CPUs, one thread; median of {args.runs} runs")
    print(f"| step | seconds per {SECONDS:.0f} s of audio | CPU seconds per hour of audio |")
    print("| --- | --- | --- |")
    for name, fn, audio_s in cases:
        median, hourly = per_hour(fn, audio_s, args.runs)
        print(f"| {name} | {median * SECONDS / audio_s:.3f} | {hourly:.1f} |")
    if args.asr_model:
        bench_asr(args.asr_model, at24, args.runs)
    return 0


def bench_asr(model: str, audio: np.ndarray, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "output.wav"
        sf.write(str(wav), audio, 24_000, subtype="PCM_16")
        t0 = time.perf_counter()
        worker = AsrWorker(default_python(), model)
        started = time.perf_counter() - t0
        try:
            median, hourly = per_hour(lambda: worker.transcribe([AsrJob(wav)]), SECONDS, runs)
        finally:
            worker.close()
    print(f"| asr worker start (NeMo import + model load; {worker.device}) | {started:.1f} | - |")
    print(f"| asr, {Path(model).name} on {worker.device} | {median:.3f} | {hourly:.1f} |")


if __name__ == "__main__":
    sys.exit(main())

"""What the server hears under each encoder preset, side by side in one run.

Speech (espeak-ng, several voices, resampled to 24 kHz) is encoded frame by frame by the
client's `OggOpusEncoder` with each preset, and by sphn's own writer (what the Full-Duplex-Bench
reference clients send), then decoded with `sphn.OpusStreamReader(24000)` - the servers' own
decoder - and compared with the original after the codec's delay: SNR and correlation of what
the server hears, and the client's encoding cost per 80 ms frame.

    python scripts/bench_encoder.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import soxr
import sphn
from rich.console import Console
from rich.table import Table

from pipeline.dataset.synthesize import speak
from pipeline.stream.opus import ENCODER_PRESETS, OggOpusEncoder
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE, Float32Array

REFERENCE = "sphn's own writer (reference clients)"
LINES = [
    ("en-us", "Could you tell me how long it takes to bake a loaf of bread at home?"),
    ("en-gb", "I was thinking about the trip, but then the weather changed completely."),
    ("en-us+f3", "Yes, right, I see what you mean. Go on, I am listening."),
    ("en-us+m3", "Sorry to interrupt, but what time does the train leave tomorrow morning?"),
]


def speech() -> Float32Array:
    parts = []
    for voice, text in LINES:
        audio, rate = speak(text, voice)
        parts.append(soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32))
        parts.append(np.zeros(SAMPLE_RATE // 2, np.float32))
    signal = np.concatenate(parts)
    n = len(signal) // FRAME_SAMPLES * FRAME_SAMPLES
    return 0.5 * signal[:n] / np.max(np.abs(signal[:n]))


def ours(preset: str) -> Callable[[Float32Array], bytes]:
    return OggOpusEncoder(**ENCODER_PRESETS[preset]).encode


def sphn_writer() -> Callable[[Float32Array], bytes]:
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    return lambda frame: bytes(writer.append_pcm(frame))


def measure(
    make: Callable[[], Callable[[Float32Array], bytes]], signal: Float32Array
) -> tuple[dict[str, float], npt.NDArray[np.float64]]:
    encode = make()
    reader = sphn.OpusStreamReader(SAMPLE_RATE)  # the servers' decoder
    heard, cost = [], []
    for frame in signal.reshape(-1, FRAME_SAMPLES):
        t0 = time.perf_counter()
        data = encode(frame)
        cost.append(time.perf_counter() - t0)
        pcm = reader.append_bytes(data)
        if pcm.size:
            heard.append(pcm)
    decoded = np.concatenate(heard).astype(np.float64)
    best = max(range(0, 400), key=lambda d: float(np.dot(decoded[d : d + 48000], signal[:48000])))
    y = decoded[best:]
    x = signal[: y.size].astype(np.float64)
    y = y[: x.size]
    snr = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    figures = {
        "snr_db": float(snr),
        "corr": float(np.corrcoef(x, y)[0, 1]),
        "delay": float(best),
        "us_per_frame": 1e6 * statistics.median(cost),
    }
    return figures, decoded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per encoder (medians shown)")
    args = ap.parse_args()
    signal = speech()
    encoders: dict[str, Callable[[], Callable[[Float32Array], bytes]]] = {
        "sphn (default; the reference clients' settings)": lambda: ours("sphn"),
        "webclient": lambda: ours("webclient"),
        REFERENCE: sphn_writer,
    }
    runs = {
        name: [measure(make, signal) for _ in range(args.repeats)]
        for name, make in encoders.items()
    }
    reference = runs[REFERENCE][0][1]
    console = Console(width=150)
    console.print(f"{len(signal) / SAMPLE_RATE:.1f} s of espeak-ng speech, {len(LINES)} voices")
    table = Table(
        "encoder",
        "SNR heard by the server (dB)",
        "correlation",
        "delay (samples)",
        "SNR vs the reference clients' audio (dB)",
        "encode us/frame",
    )
    for name, results in runs.items():
        figures = [f for f, _ in results]
        heard = results[0][1]
        n = min(heard.size, reference.size)
        diff = np.sum((heard[:n] - reference[:n]) ** 2)
        vs_ref = (
            "identical" if diff == 0 else f"{10 * np.log10(np.sum(reference[:n] ** 2) / diff):.1f}"
        )
        table.add_row(
            name,
            f"{statistics.median(f['snr_db'] for f in figures):.2f}",
            f"{statistics.median(f['corr'] for f in figures):.4f}",
            f"{statistics.median(f['delay'] for f in figures):.0f}",
            vs_ref,
            f"{statistics.median(f['us_per_frame'] for f in figures):.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()

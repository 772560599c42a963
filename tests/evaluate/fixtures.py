"""Synthetic evaluation fixtures, made the same way for the parity goldens and for the tests.

A small FDB-shaped tree: v1.5 ``user_interruption`` samples for the timing (16 and 48 kHz
inputs, 24 kHz outputs: overlapping speech, a silent output, gaps on both sides of the two
merge thresholds), v1.0 pause, turn-taking and backchannel samples for the rules (ASR word
files as FDB's ASR writes them, words with a missing end, a backchannel-only output, a long
turn, silence), and a ground truth distribution of our own for the backchannel ids. Speech is
espeak-ng's; ``fixture_digests`` lets a test see that it made the same files the goldens were
made from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

Audio = np.ndarray[Any, np.dtype[np.float32]]
TRUTH_NAME = "icc_gt_distribution.json"


def speak(text: str, rate: int, voice: str = "en-us") -> Audio:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (make system-packages)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        cmd = [exe, "-v", voice, "-s", "170", "-w", str(wav), text]
        subprocess.run(cmd, check=True, capture_output=True)
        data, src = sf.read(str(wav), dtype="float32")
    return soxr.resample(0.8 * data, src, rate).astype(np.float32)


def timeline(rate: int, seconds: float, parts: list[tuple[float, str, str]]) -> Audio:
    """Silence of ``seconds`` with each (start_s, text, voice) spoken from its start."""
    out = np.zeros(int(seconds * rate), dtype=np.float32)
    for start, text, voice in parts:
        speech = speak(text, rate, voice)
        i = int(start * rate)
        out[i : i + speech.shape[0]] += speech[: max(0, out.shape[0] - i)]
    return np.clip(out, -1.0, 1.0)


def _wav(path: Path, audio: Audio, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="PCM_16")


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def asr(words: list[tuple[str, float | None, float | None]]) -> dict[str, Any]:
    """An ASR file in FDB's format."""
    chunks = [{"text": f" {w}", "timestamp": [s, e]} for w, s, e in words]
    return {"text": "".join(c["text"] for c in chunks), "chunks": chunks}


USER = "en-us"
MODEL = "en-gb"
# (id, input rate, input parts, overlap window, output parts): output.wav is 24 kHz, 12 s
INTERRUPTION = (
    (
        "0",
        16_000,
        [
            (0.5, "I was thinking about a trip to the mountains.", USER),
            (5.0, "Wait, hold on a second.", USER),
        ],
        [5.0, 6.4],
        [(3.6, "The mountains are lovely in the spring, and the trails are quiet.", MODEL)],
    ),
    (
        "1",
        16_000,
        [
            (0.5, "Could you tell me the way to the station?", USER),
            (4.5, "Sorry, one more thing.", USER),
        ],
        [4.5, 5.8],
        [],
    ),
    (
        "2",
        48_000,
        [(0.5, "What is the best way", USER), (2.05, "to learn a language?", USER)],
        [2.05, 3.4],
        [
            (4.2, "Practice every day.", MODEL),
            (5.8, "Read a lot.", MODEL),
            (7.0, "And speak with people.", MODEL),
        ],
    ),
    (
        "3",
        16_000,
        [
            (0.3, "My sister adopted a dog.", USER),
            (3.0, "It barks at night.", USER),
            (6.5, "No, that is not it.", USER),
        ],
        [6.5, 7.7],
        [
            (1.5, "Oh, really?", MODEL),
            (3.3, "Dogs bark when they are lonely.", MODEL),
            (6.8, "I see.", MODEL),
            (9.0, "Tell me more about it.", MODEL),
        ],
    ),
)
PAUSE = {
    "synthetic_pause_handling": {
        "0": [],
        "1": [("yes", 0.2, 0.4), ("okay", 0.5, 0.7)],
        "2": [
            ("so", 0.1, 0.2),
            ("what", 0.2, 0.3),
            ("do", 0.3, 0.4),
            ("you", 0.4, 0.5),
            ("mean", 0.5, 0.8),
        ],
        "3": [("well", 0.2, 0.6), ("sure", 1.2, 1.7)],
        "4": [("uh", 0.2, 0.5), ("huh", 0.6, None)],
        "5": [("right", 0.2, 0.5), ("then", 1.5, None)],
    },
    "candor_pause_handling": {
        "0": [("mm", 3.0, 3.2)],
        "1": [("I", 1.0, 1.1), ("think", 1.1, 1.4), ("so", 1.4, 2.3)],
    },
}
TURN_END = [{"text": "[TURN-TAKING]", "timestamp": [2.0, 2.4]}]
TURN = {
    "0": [("sure", 2.5, 2.9), ("that", 3.0, 3.2), ("works", 3.2, 3.8)],
    "1": [("yes", 1.5, 1.8), ("I", 1.9, 2.0), ("agree", 2.0, 2.7)],
    "2": [("oh", 2.6, 2.7), ("ok", 2.7, 2.9)],
    "3": [],
}
# (id, output parts at 24 kHz over 10 s, words); the words are true times (as the ASR hears)
BACKCHANNEL = (
    (
        "0",
        [(1.0, "yeah", MODEL), (3.2, "mm hmm", MODEL), (6.0, "right", MODEL)],
        [("yeah", 1.0, 1.3), ("mm", 3.2, 3.4), ("hmm", 3.4, 3.7), ("right", 6.0, 6.3)],
    ),
    (
        "1",
        [(1.0, "That is a very interesting point, tell me more about what happened.", MODEL)],
        [
            ("that", 1.0, 1.2),
            ("is", 1.2, 1.3),
            ("a", 1.3, 1.4),
            ("very", 1.4, 1.7),
            ("interesting", 1.7, 2.3),
            ("point", 2.3, 2.6),
        ],
    ),
    ("2", [], []),
    (
        "3",
        [(0.5, "oh I see what you mean", MODEL), (5.0, "okay", MODEL)],
        [
            ("oh", 0.5, 0.6),
            ("I", 0.6, 0.7),
            ("see", 0.7, 0.9),
            ("what", 0.9, 1.0),
            ("you", 1.0, 1.1),
            ("mean", 1.1, None),
            ("okay", 5.0, None),
        ],
    ),
)


def truth_distribution() -> dict[str, list[float]]:
    """Our own stand-in for FDB's ground truth: smooth bumps of different lengths."""
    truth = {}
    for key, n, centre in (("0", 51, 0.3), ("1", 40, 0.5), ("2", 60, 0.2), ("3", 25, 0.7)):
        x = np.linspace(0.0, 1.0, n)
        bump = np.exp(-(((x - centre) / 0.15) ** 2)) + 0.01
        truth[key] = [float(v) for v in bump / bump.sum()]
    return truth


def make_fixtures(root: Path) -> tuple[Path, Path]:
    """Write the tree under ``root``: returns (dataset root, folder holding the truth file)."""
    data = root / "data"
    for sid, rate, user, window, model in INTERRUPTION:
        folder = data / "user_interruption" / sid
        _wav(folder / "input.wav", timeline(rate, 12.0, user), rate)
        _wav(folder / "output.wav", timeline(24_000, 12.0, model), 24_000)
        _json(folder / "metadata.json", {"timestamps": window})
    for task, samples in PAUSE.items():
        for sid, words in samples.items():
            _json(data / task / sid / "output.json", asr(words))
    for sid, words in TURN.items():
        _json(data / "candor_turn_taking" / sid / "turn_taking.json", TURN_END)
        _json(data / "candor_turn_taking" / sid / "output.json", asr(words))
    for sid, parts, words in BACKCHANNEL:
        folder = data / "icc_backchannel" / sid
        _wav(folder / "output.wav", timeline(24_000, 10.0, parts), 24_000)
        _json(folder / "output.json", asr(words))
    fdb = root / "fdb-data"
    _json(fdb / TRUTH_NAME, truth_distribution())
    return data, fdb


def fixture_digests(data: Path) -> dict[str, str]:
    """sha256 of every fixture file, by path relative to the dataset root."""
    return {
        str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file() and p.suffix in (".wav", ".json") and p.name in FIXTURE_NAMES
    }


FIXTURE_NAMES = ("input.wav", "output.wav", "metadata.json", "output.json", "turn_taking.json")

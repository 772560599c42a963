"""The torch-free VAD against silero's own TorchScript model and ``get_speech_timestamps``
(what FDB's scripts run), on espeak-ng speech: the same segments, in samples and in FDB's
backchannel reading (seconds, a 24 kHz file taken as 16 kHz).

The reference runs in the server venv (it has PyTorch: `make server-env`), from the same
pinned silero-vad wheel, unpacked into a temporary folder - nothing else is installed.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluate.resample import resample
from pipeline.evaluate.vad import OnnxVad, segments_in_seconds, speech_segments
from pipeline.evaluate.vad_model import SILERO_WHEEL, wheel_dirs
from tests.evaluate.fixtures import MODEL, USER, timeline
from tests.evaluate.vad_support import require_vad_model
from tests.real_server import server_python, server_python_available

REFERENCE = """
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from silero_vad import get_speech_timestamps, load_silero_vad
model = load_silero_vad()
out = {}
for name in sys.argv[2:]:
    audio = torch.from_numpy(np.load(name))
    samples = get_speech_timestamps(audio, model, sampling_rate=16000)
    seconds = get_speech_timestamps(audio, model, return_seconds=True)
    out[name] = {"samples": [[s["start"], s["end"]] for s in samples],
                 "seconds": [[s["start"], s["end"]] for s in seconds]}
print(json.dumps(out))
"""
SPEECH = [
    (0.4, "Could you tell me how to get to the train station from here?", USER),
    (5.2, "Sure.", MODEL),
    (6.0, "Take the second street on the left, then walk straight on.", MODEL),
    (11.3, "Thanks a lot!", USER),
    (13.0, "mm hmm", MODEL),
    (14.1, "yeah", USER),
]


def _unpacked_wheel(into: Path) -> Path:
    wheel = next((d / SILERO_WHEEL for d in wheel_dirs() if (d / SILERO_WHEEL).is_file()), None)
    assert wheel is not None
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    return into


def test_onnx_vad_gives_torchscript_segments(tmp_path: Path) -> None:
    require_vad_model()
    if not server_python_available():
        pytest.skip(f"no PyTorch venv for the reference ({server_python()}): make server-env")
    rng = np.random.default_rng(0)
    speech24 = timeline(24_000, 16.0, SPEECH)
    noisy24 = speech24 * 0.3 + rng.normal(0, 0.01, speech24.shape[0]).astype(np.float32)
    signals = {
        "clean16": resample(speech24, 24_000, 16_000),  # as the timing stage reads it
        "noisy16": resample(noisy24, 24_000, 16_000),
        "as16": speech24,  # FDB's backchannel reading of a 24 kHz file
    }
    files = []
    for name, signal in signals.items():
        np.save(tmp_path / f"{name}.npy", signal.astype(np.float32))
        files.append(str(tmp_path / f"{name}.npy"))
    wheel = _unpacked_wheel(tmp_path / "wheel")
    proc = subprocess.run(
        [str(server_python()), "-c", REFERENCE, str(wheel), *files],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    vad = OnnxVad()
    for name, signal in signals.items():
        ours = speech_segments(vad.probabilities(signal), signal.shape[0])
        want = reference[str(tmp_path / f"{name}.npy")]
        assert len(want["samples"]) >= 3, name  # real speech was found
        assert [list(s) for s in ours] == want["samples"], name
        seconds = segments_in_seconds(ours, signal.shape[0])
        assert [list(s) for s in seconds] == want["seconds"], name

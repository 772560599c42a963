"""The ASR worker: runs INSIDE ``.venv-asr`` (NeMo, torch), never in the client's venv.

    .venv-asr/bin/python pipeline/evaluate/asr_worker.py --model M [--revision SHA]

It imports nothing from the rest of this package (that venv does not have it), loads the model
once, says ``{"ready": true, ...}`` on a line of stdout, then answers one JSON line per request
line on stdin - ``{"jobs": [{"wav": PATH, "crop_after_s": null | SECONDS}, ...]}`` gets
``{"results": [DOC, ...]}`` or ``{"error": MESSAGE}`` - until stdin closes (so it ends with the
client, even a killed one). Everything else NeMo prints goes to stderr.

Each DOC is what Full-Duplex-Bench's ``get_transcript/asr.py`` writes: the wav read with
soundfile, multi-channel averaged to mono, for the interruption task cropped from sample
``int(END * rate)`` where END is the end of the interruption, written to a temporary PCM-16
wav, transcribed alone with ``timestamps=True``, and each word's start and end shifted back by
END; ``text`` is the words joined by single spaces. The pure parts (:func:`crop`,
:func:`fdb_document`) import neither torch nor NeMo, so the client's tests run them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

# The model of FDB's ASR script, pinned by revision of its Hugging Face repository
PINNED_MODEL = "nvidia/parakeet-tdt-0.6b-v2"
PINNED_REVISION = "ae9ad07059c7c739ffaf932226a8fe64ae2620b0"
PINNED_FILE = "parakeet-tdt-0.6b-v2.nemo"
FIX = (
    "run once where huggingface.co is reachable (it is cached then), or pass --asr-model PATH.nemo"
)


class WorkerError(RuntimeError):
    """A failure the client shows as it is (no traceback)."""


def crop(waveform: np.ndarray[Any, Any], rate: int, after_s: float) -> np.ndarray[Any, Any]:
    """The audio after ``after_s`` seconds, from sample ``int(after_s * rate)`` as FDB's ASR
    script crops it (truncation, not rounding)."""
    return waveform[int(after_s * rate) :]


def fdb_document(words: list[dict[str, Any]], offset_s: float = 0.0) -> dict[str, Any]:
    """FDB's word file from NeMo's word timestamps (``word``, ``start``, ``end`` in seconds of
    the transcribed audio), each time shifted by ``offset_s`` (the crop)."""
    chunks = [
        {"text": w["word"], "timestamp": [w["start"] + offset_s, w["end"] + offset_s]}
        for w in words
    ]
    return {"text": " ".join(str(w["word"]) for w in words).strip(), "chunks": chunks}


def mono(waveform: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return waveform.mean(axis=1) if waveform.ndim > 1 else waveform


def resolve_model(spec: str, revision: str) -> str:
    """A local ``.nemo`` path as given; the pinned model from the Hugging Face cache, else
    downloaded at its pinned revision."""
    if spec.endswith(".nemo"):
        if not Path(spec).is_file():
            raise WorkerError(f"--asr-model {spec}: no such .nemo file")
        return spec
    if spec != PINNED_MODEL:
        raise WorkerError(f"--asr-model {spec!r}: give a .nemo file or {PINNED_MODEL}")
    from huggingface_hub import hf_hub_download

    try:
        return str(hf_hub_download(spec, PINNED_FILE, revision=revision, local_files_only=True))
    except Exception:  # not cached: try the hub itself
        pass
    try:
        return str(hf_hub_download(spec, PINNED_FILE, revision=revision))
    except Exception as exc:  # offline, gated, proxy: all the same to the user
        raise WorkerError(
            f"{spec} at revision {revision[:12]} is not in the Hugging Face cache and could"
            f" not be downloaded ({type(exc).__name__}: {str(exc)[:200]}); {FIX}"
        ) from exc


def load(spec: str, revision: str, device: str) -> Any:
    path = resolve_model(spec, revision)  # before NeMo's slow import: a wrong model fails fast
    import torch
    from nemo.collections.asr.models import ASRModel

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ASRModel.restore_from(path, map_location=device)
    model.eval()
    return model


def transcribe(model: Any, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One FDB document per job, each file transcribed on its own as FDB's script does."""
    with tempfile.TemporaryDirectory(prefix="fdb-asr-") as tmp:
        paths, offsets = [], []
        for i, job in enumerate(jobs):
            waveform, rate = sf.read(job["wav"])
            waveform = mono(waveform)
            offset = float(job.get("crop_after_s") or 0.0)
            if job.get("crop_after_s") is not None:
                waveform = crop(waveform, rate, offset)
            path = str(Path(tmp) / f"{i}.wav")
            sf.write(path, waveform, rate)  # soundfile's default for .wav: PCM-16, as FDB's
            paths.append(path)
            offsets.append(offset)
        hypotheses = model.transcribe(
            paths, batch_size=1, timestamps=True, num_workers=0, verbose=False
        )
    return [
        fdb_document(h.timestamp["word"], off) for h, off in zip(hypotheses, offsets, strict=True)
    ]


def versions() -> dict[str, str]:
    from importlib import metadata

    return {d: metadata.version(d) for d in ("nemo_toolkit", "torch", "soundfile")}


def serve(model: Any, requests: IO[str], replies: IO[str]) -> None:
    for line in requests:
        try:
            reply: dict[str, Any] = {"results": transcribe(model, json.loads(line)["jobs"])}
        except Exception as exc:  # one bad request fails its samples only
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=f"a .nemo file or {PINNED_MODEL}")
    parser.add_argument("--revision", default=PINNED_REVISION)
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda")
    args = parser.parse_args()
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever NeMo prints goes to stderr; stdout carries the protocol only
    sys.stdout = sys.stderr
    try:
        model = load(args.model, args.revision, args.device)
    except WorkerError as exc:
        replies.write(json.dumps({"error": str(exc)}) + "\n")
        return 2
    device = str(next(model.parameters()).device)
    ready = {"ready": True, "device": device, "versions": versions()}
    replies.write(json.dumps(ready) + "\n")
    replies.flush()
    serve(model, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())

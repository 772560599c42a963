"""Write a sample's outputs beside its input, atomically; tell a finished sample from a leftover.

A sample is complete only when ``{prefix}output_text.json`` (written last; the commit marker) is
ours, names the current input's sha256, and the wav's sha256 and length match what it records -
and it was made with the settings that determine the output (its ``settings_sha256``; see
pipeline/run/fingerprint.py). Anything else - a partial wav from a killed run, a reference
client's file, a stale output for a changed input, an output of other settings - is redone.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from pipeline.dataset.discovery import Sample
from pipeline.digest import bytes_sha256
from pipeline.results.atomic import TMP_SUFFIX, atomic_write_bytes
from pipeline.stream.protocol import FRAME_SAMPLES, SAMPLE_RATE, Float32Array
from pipeline.stream.session import TextPiece

TEXT_FORMAT = "fdb-pipeline/output-text/1"
ALIGNMENT = "reference"
ALIGNMENT_DOC = (
    "reference: one 80 ms frame of silence, then the decoded output frames in arrival order,"
    " cut or zero-padded to the input's length at 24 kHz (as both Full-Duplex-Bench clients)"
)


def align_output(frames_pcm: Float32Array, length: int) -> Float32Array:
    """Reference alignment: 1 frame of silence, then the output, cut/padded to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    body = frames_pcm[: max(0, length - FRAME_SAMPLES)]
    out[FRAME_SAMPLES : FRAME_SAMPLES + body.shape[0]] = body
    return out


def _wav_bytes(pcm: Float32Array) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(pcm, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def remove_leftovers(sample: Sample) -> list[Path]:
    """Delete temporary files a killed run left in the output folder; return what was removed."""
    removed = []
    for name in (sample.output_path.name, sample.text_path.name):
        for tmp in sample.output_folder.glob(f".{name}.*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


STALE_SUFFIX = ".stale"
PREVIOUS_SUFFIX = ".prev"


def set_aside_stale(sample: Sample) -> Path | None:
    """An output that is not complete for this input (a killed run's, another client's, an
    older input's) is renamed ``*.stale``, not deleted, so the evaluation cannot score it."""
    sample.text_path.unlink(missing_ok=True)
    if not sample.output_path.exists():
        return None
    target = sample.output_path.with_name(sample.output_path.name + STALE_SUFFIX)
    sample.output_path.replace(target)
    return target


def set_aside_previous(sample: Sample, settings_sha256: str | None) -> Path:
    """A complete output of other settings: both files renamed ``*.prev-<their settings>``
    (never deleted; one pair per earlier settings); returns the wav's new path."""
    tag = f"{PREVIOUS_SUFFIX}-{(settings_sha256 or 'unknown')[:12]}"
    wav = sample.output_path.with_name(sample.output_path.name + tag)
    sample.text_path.replace(sample.text_path.with_name(sample.text_path.name + tag))
    sample.output_path.replace(wav)
    return wav


def write_outputs(
    sample: Sample,
    aligned: Float32Array,
    pieces: Sequence[TextPiece],
    record: dict[str, Any],
) -> None:
    """Write the wav, then the text json that commits it. ``record`` adds provenance fields."""
    wav = _wav_bytes(aligned)
    sample.text_path.unlink(missing_ok=True)  # un-commit first: a crash below leaves "not done"
    atomic_write_bytes(sample.output_path, wav)
    doc = {
        "format": TEXT_FORMAT,
        "input": sample.input_path.name,
        "output": sample.output_path.name,
        "output_sha256": bytes_sha256(wav),
        "output_samples": int(aligned.shape[0]),
        "sample_rate": SAMPLE_RATE,
        "alignment": ALIGNMENT,
        "alignment_doc": ALIGNMENT_DOC,
        **record,
        "text": "".join(p.text for p in pieces),
        "pieces": [
            {
                "text": p.text,
                "frame": p.frame,
                "time_s": round(p.time_s, 3),
                "wall_s": round(p.wall_s, 3),
            }
            for p in pieces
        ],
    }
    data = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    atomic_write_bytes(sample.text_path, data)


Completion = Literal["complete", "other_settings", "incomplete"]


@dataclass(frozen=True)
class Found:
    """What a sample folder holds for one pass."""

    state: Completion
    settings_sha256: str | None = None  # of the complete output found (other_settings)


def inspect_outputs(sample: Sample, input_sha256: str, settings_sha256: str) -> Found:
    """Complete for this input and these settings, complete for other settings, or not
    complete at all (missing, partial, corrupt, foreign, or made for another input)."""
    try:
        doc = json.loads(sample.text_path.read_text(encoding="utf-8"))
        wav = sample.output_path.read_bytes()
    except (OSError, ValueError):
        return Found("incomplete")
    if not isinstance(doc, dict) or doc.get("format") != TEXT_FORMAT:
        return Found("incomplete")
    if doc.get("input_sha256") != input_sha256 or doc.get("output_sha256") != bytes_sha256(wav):
        return Found("incomplete")
    try:
        info = sf.info(str(sample.output_path))
    except (sf.LibsndfileError, RuntimeError):
        return Found("incomplete")
    if info.samplerate != SAMPLE_RATE or info.frames != doc.get("output_samples"):
        return Found("incomplete")
    made_with = doc.get("settings_sha256")
    if made_with != settings_sha256:
        return Found("other_settings", made_with if isinstance(made_with, str) else None)
    return Found("complete", made_with)

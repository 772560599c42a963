"""The settings that determine a sample's outputs, recorded with them and compared on resume.

An output counts as complete only if it was made with the same profile, model identity (the
server image - Docker image id or SIF sha256 -, the weights' repository and revision or the
local weight files, CPU or GPU, the server command and its arguments; unknown for a server
somebody else runs), voice (a custom voice file by its sha256 too), text prompt, encoder and
alignment. The pace, timeouts and retries change how a sample is streamed, not what the model
hears, and are left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import InferSettings
from pipeline.digest import bytes_sha256, file_sha256
from pipeline.results.outputs import ALIGNMENT
from pipeline.results.records import to_jsonable
from pipeline.stream.protocol import PROFILE_SPECS

FINGERPRINT_FORMAT = 1


def _voice_file_sha256(voice: str) -> str | None:
    path = Path(voice).expanduser()
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def output_settings(
    settings: InferSettings, voice_prompt: str, model: dict[str, Any] | None
) -> dict[str, Any]:
    """What determines every sample's outputs in this run, but for the per-task text prompt
    (``for_task`` adds it). ``model`` is the server source's identity of the model (None:
    not known, as for a server somebody else runs)."""
    prompted = PROFILE_SPECS[settings.profile].sends_prompts
    return {
        "format": FINGERPRINT_FORMAT,
        "profile": settings.profile,
        "model": to_jsonable(model),  # redacted, like everything the records hold
        "voice_prompt": voice_prompt if prompted else None,
        "voice_sha256": _voice_file_sha256(settings.voice_prompt) if prompted else None,
        "encoder": settings.encoder,
        "alignment": ALIGNMENT,
    }


def for_task(base: dict[str, Any], settings: InferSettings, task: str) -> dict[str, Any]:
    prompted = PROFILE_SPECS[settings.profile].sends_prompts
    return {**base, "text_prompt": settings.text_prompt_for(task) if prompted else None}


def digest(doc: dict[str, Any]) -> str:
    """The sha256 of a fingerprint: canonical JSON, so key order never matters."""
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return bytes_sha256(text.encode("utf-8"))

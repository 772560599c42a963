"""FDB's ASR files (``output.json`` and friends): ``{"text": ..., "chunks": [{"text": WORD,
"timestamp": [START, END]}, ...]}`` in seconds; a word's END (rarely its START) may be null."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EvalInputError(ValueError):
    """A file the evaluation reads is missing or malformed; the message names it and the fix."""


@dataclass(frozen=True)
class Word:
    text: str
    start: float | None
    end: float | None


def _time(value: Any, path: Path, index: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvalInputError(f"{path}: chunk {index} has a timestamp {value!r}, not seconds")
    return float(value)


def read_json(path: Path, made_by: str) -> Any:
    """A JSON file the evaluation needs; ``made_by`` says what writes it (for the error)."""
    if not path.is_file():
        raise EvalInputError(f"{path} is missing; it is written by {made_by}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalInputError(f"{path} is not readable JSON ({exc}); redo {made_by}") from exc


def read_words(path: Path) -> list[Word]:
    """The word chunks of an ASR file, in order."""
    data = read_json(path, "the ASR stage (FDB's get_transcript/asr.py format)")
    chunks = data.get("chunks") if isinstance(data, dict) else None
    if not isinstance(chunks, list):
        raise EvalInputError(f"{path} has no list of 'chunks'; expected FDB's ASR format")
    words: list[Word] = []
    for i, chunk in enumerate(chunks):
        stamp = chunk.get("timestamp") if isinstance(chunk, dict) else None
        if not isinstance(stamp, list) or len(stamp) != 2:
            raise EvalInputError(f"{path}: chunk {i} has no [start, end] 'timestamp'")
        words.append(
            Word(str(chunk.get("text", "")), _time(stamp[0], path, i), _time(stamp[1], path, i))
        )
    return words

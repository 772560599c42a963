"""The judges' replies, read as FDB's evaluation reads them, and the requests built as FDB
builds them (same messages, same characters: the request hash of a sample is FDB's too).

- Behaviour (v1.5): the first JSON object in the reply that has a ``behaviour`` key; its value
  must be a list of tags (FDB would count the letters of a bare string). Tags are counted per
  axis by their first letter; FDB reports the ``C`` axis.
- Interruption (v1.0): the last "Analysis: ... / I would rate the AI's response as N" pair.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.evaluate.provenance import EVAL_KEY

RATING = re.compile(
    r"Analysis:\s*(?P<analysis>.*?)\nI would rate the AI's response as (?P<n>\d+)", re.S
)
USER_INDENT = " " * 8  # FDB's messages are indented f-strings: the spaces are part of them
INTERRUPTION_INDENT = " " * 16


class MalformedReply(ValueError):
    """The reply has no answer in the expected form."""


class JudgeReplyError(ValueError):
    """Every ask of a sample got a reply that does not parse; the error carries them."""


class JudgeRequestError(RuntimeError):
    """This sample's request failed for good (bounded retries spent, or a 4xx)."""


class JudgeStop(RuntimeError):
    """The endpoint refuses every request (key, permission, model): the stage stops."""


def behaviour_of(reply: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    pos = reply.find("{")
    while pos != -1:
        try:
            found, end = decoder.raw_decode(reply, pos)
        except json.JSONDecodeError:
            pos = reply.find("{", pos + 1)
            continue
        if isinstance(found, dict) and "behaviour" in found:
            tags = found["behaviour"]
            if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
                raise MalformedReply("'behaviour' is not a list of tags")
            return found
        pos = reply.find("{", end)
    raise MalformedReply("no JSON object with a 'behaviour' key")


def rating_of(reply: str) -> dict[str, Any]:
    matches = list(RATING.finditer(reply + "\n"))
    if not matches:
        raise MalformedReply("no 'Analysis: ...' followed by 'I would rate the AI's response as N'")
    last = matches[-1]
    return {"analysis": last.group("analysis").strip(), "rating": int(last.group("n"))}


def compact(asr: dict[str, Any]) -> str:
    """An ASR file as FDB puts it in the prompt (without this pipeline's provenance key)."""
    body = {k: v for k, v in asr.items() if k != EVAL_KEY}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def behaviour_message(
    input_clean: dict[str, Any],
    input_noisy: dict[str, Any],
    output_clean: dict[str, Any],
    output_noisy: dict[str, Any],
) -> str:
    fields = (
        ("input_clean", input_clean),
        ("input_noisy", input_noisy),
        ("output_clean", output_clean),
        ("output_noisy", output_noisy),
    )
    inner = f",\n{USER_INDENT}    ".join(f'"{name}": {compact(asr)}' for name, asr in fields)
    return f"\n{USER_INDENT}{{\n{USER_INDENT}    {inner}\n{USER_INDENT}}}\n{USER_INDENT}"


def interruption_message(context: str, interrupt: str, response: str) -> str:
    lines = (
        f"- Contextual user turn: {context}",
        f"- User interrupting turn: {interrupt}",
        f"- AI's response: {response}",
    )
    pad = INTERRUPTION_INDENT
    return "\n" + "".join(f"{pad}{line}\n" for line in lines) + pad

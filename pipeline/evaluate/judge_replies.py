"""The judges' replies, read as FDB's evaluation reads them, and the user messages filled as
FDB fills them (its f-strings, read from the checkout: the same characters, so the request
hash of a sample is FDB's too).

- Behaviour (v1.5): the first JSON object in the reply that has a ``behaviour`` key; its value
  must be a list of tags (FDB would count the letters of a bare string). Tags are counted per
  axis by their first letter; FDB reports the ``C`` axis.
- Interruption (v1.0): the last match of FDB's rating pattern: (analysis, rating).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pipeline.evaluate.judge_sources import BEHAVIOUR_FIELDS, INTERRUPTION_FIELDS, JudgePrompts
from pipeline.evaluate.provenance import EVAL_KEY


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


def rating_of(reply: str, pattern: re.Pattern[str]) -> dict[str, Any]:
    """The last (analysis, rating) match of FDB's pattern (read from the checkout) in the reply
    with a newline added, as FDB reads it."""
    matches = list(pattern.finditer(reply + "\n"))
    if not matches:
        raise MalformedReply("no rating in the form FDB's pattern reads")
    last = matches[-1]
    try:
        return {"analysis": last.group(1).strip(), "rating": int(last.group(2))}
    except (TypeError, ValueError) as exc:
        raise MalformedReply(f"the rating {last.group(2)!r} is not a whole number") from exc


def compact(asr: dict[str, Any]) -> str:
    """An ASR file as FDB puts it in the prompt (without this pipeline's provenance key)."""
    body = {k: v for k, v in asr.items() if k != EVAL_KEY}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def behaviour_message(prompts: JudgePrompts, asr: Mapping[str, dict[str, Any]]) -> str:
    """FDB's behaviour user message: its f-string filled with the four ASR files."""
    values = {name: compact(asr[name]) for name in BEHAVIOUR_FIELDS}
    return prompts.behaviour_user.fill(values, BEHAVIOUR_FIELDS)


def interruption_message(prompts: JudgePrompts, context: str, interrupt: str, response: str) -> str:
    values = {"context": context, "interrupt": interrupt, "response": response}
    return prompts.interruption_user.fill(values, INTERRUPTION_FIELDS)

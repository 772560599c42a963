"""One chat request to an OpenAI-compatible endpoint, with bounded retries.

- 429, 408, 5xx, a timeout or a dropped connection: retried with exponential backoff, at most
  ``attempts`` requests in all (the SDK's own retries are off, so the bound is ours).
- 401/403 (the key) and 404 (the model or the URL): every other sample would fail the same
  way, so :class:`JudgeStop` stops the stage at once; its message names the key's environment
  variable, never the key (nor the server's reply, which may quote part of it).
- Any other 4xx: this sample failed (:class:`JudgeRequestError`), not retried.

The key is read from the environment here and nowhere else; every message that leaves this
module has it (and anything shaped like an OpenAI key) masked.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from pipeline.digest import bytes_sha256
from pipeline.evaluate.judge_replies import JudgeRequestError, JudgeStop
from pipeline.evaluate.settings import JudgeSettings

KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_*\-]{4,}")
STOP_STATUSES = (401, 403, 404)
RETRIED_STATUSES = (408, 409, 429)


@dataclass(frozen=True)
class JudgeRequest:
    model: str
    messages: list[dict[str, str]]
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)  # never used by FDB: kept empty

    def body(self) -> dict[str, Any]:
        return {"model": self.model, "messages": self.messages, "seed": self.seed, **self.extra}

    def sha256(self) -> str:
        """sha256 of the request body as canonical JSON (sorted keys, no spaces)."""
        text = json.dumps(self.body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return bytes_sha256(text.encode())


def mask(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return KEY_SHAPE.sub("sk-***", text)


def transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRIED_STATUSES or exc.status_code >= 500
    return False


class JudgeClient:
    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self._key = os.environ.get(settings.api_key_env, "")
        if not self._key:
            raise JudgeStop(f"${settings.api_key_env} is not set (the judge's API key)")
        self._client = openai.OpenAI(
            api_key=self._key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=0,
        )

    @property
    def endpoint(self) -> str:
        return str(self._client.base_url)

    def ask(self, request: JudgeRequest) -> str:
        """The reply's text ("" when the reply has none)."""
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.attempts),
            wait=wait_random_exponential(multiplier=self.settings.backoff_s, max=60),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(request)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise JudgeRequestError(
                f"{type(exc).__name__} from {self.endpoint} after {self.settings.attempts}"
                f" attempts (timeout {self.settings.timeout_s:g} s each)"
            ) from None
        raise AssertionError("unreachable: tenacity returns or raises")

    def _once(self, request: JudgeRequest) -> str:
        response = self._client.chat.completions.create(
            model=request.model,
            messages=request.messages,  # type: ignore[arg-type]
            seed=request.seed,
            **request.extra,
        )
        return (response.choices[0].message.content or "") if response.choices else ""

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        env = self.settings.api_key_env
        if status in (401, 403):
            return JudgeStop(
                f"the judge endpoint {self.endpoint} refused the key in ${env} (HTTP {status});"
                f" check ${env}, or name another variable with --judge-api-key-env"
            )
        if status == 404:
            return JudgeStop(
                f"the judge endpoint {self.endpoint} has no such model or path (HTTP 404):"
                f" {mask(exc.message, self._key)[:300]}; check --judge-model and --judge-base-url"
            )
        spent = f" after {self.settings.attempts} attempts" if transient(exc) else ""
        return JudgeRequestError(
            f"HTTP {status} from {self.endpoint}{spent}: {mask(exc.message, self._key)[:300]}"
        )

    def masked(self, text: str) -> str:
        return mask(text, self._key)

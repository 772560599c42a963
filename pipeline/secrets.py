"""Secrets (``HF_TOKEN`` and the like) never reach a log, a manifest or a shown command line."""

from __future__ import annotations

import re

TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "KEY")


def redact(text: str) -> str:
    """Remove anything that looks like a Hugging Face token."""
    return TOKEN_PATTERN.sub("hf_***", text)


def is_secret_name(name: str) -> bool:
    """An environment variable whose value must be masked wherever it is shown."""
    return any(word in name.upper() for word in SECRET_WORDS)


def public_env(env: dict[str, str]) -> dict[str, str]:
    """An environment as it may be shown: secret values masked, tokens redacted."""
    return {k: ("***" if is_secret_name(k) else redact(v)) for k, v in env.items()}

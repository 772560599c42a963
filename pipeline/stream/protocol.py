"""The Moshi / PersonaPlex wire protocol: message kinds, profiles and the session URL."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

CHAT_PATH = "/api/chat"
DEFAULT_PORT = 8998


class Kind(enum.IntEnum):
    HANDSHAKE = 0x00
    AUDIO = 0x01
    TEXT = 0x02


@dataclass(frozen=True)
class ProfileSpec:
    name: str
    sends_prompts: bool  # PersonaPlex requires voice_prompt and text_prompt query parameters
    output_frame_lag: int  # input frames minus output frames (moshi's first step emits nothing)
    # moshi sends a step's text piece after that step's audio, PersonaPlex before it
    text_after_audio: bool

    def expected_output_frames(self, input_frames: int) -> int:
        return max(0, input_frames - self.output_frame_lag)


PROFILE_SPECS = {
    "personaplex": ProfileSpec(
        "personaplex", sends_prompts=True, output_frame_lag=0, text_after_audio=False
    ),
    "moshi": ProfileSpec("moshi", sends_prompts=False, output_frame_lag=1, text_after_audio=True),
}


class ServerAddressError(ValueError):
    pass


def normalize_server(server: str) -> str:
    """Turn ``host:port``, ``host``, ``ws://...`` or ``wss://...`` into a base ws(s) URL."""
    text = server.strip()
    if not text:
        raise ServerAddressError("empty server address; use host:port, ws://host:port or wss://...")
    if "://" not in text:
        text = f"ws://{text}"
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ServerAddressError(
            f"server {server!r}: scheme {parts.scheme!r} is not supported; use ws:// or wss://"
        )
    if not parts.hostname:
        raise ServerAddressError(f"server {server!r} has no host; use host:port")
    try:
        port = parts.port
    except ValueError:
        raise ServerAddressError(f"server {server!r} has an invalid port") from None
    netloc = parts.netloc if port is not None else f"{parts.netloc}:{DEFAULT_PORT}"
    path = parts.path.rstrip("/") or CHAT_PATH
    return urlunsplit((scheme, netloc, path, "", ""))


def session_url(server: str, profile: str, voice_prompt: str, text_prompt: str) -> str:
    """The URL of one chat session. Never carries ``seed`` (it crashes PersonaPlex)."""
    base = normalize_server(server)
    if not PROFILE_SPECS[profile].sends_prompts:
        return base
    if not text_prompt.strip():
        raise ValueError("PersonaPlex crashes on an empty text prompt; give --text-prompt")
    query = urlencode({"voice_prompt": voice_prompt, "text_prompt": text_prompt}, quote_via=quote)
    return f"{base}?{query}"

"""The Moshi / PersonaPlex wire protocol: message kinds, profiles and the session URL."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt

CHAT_PATH = "/api/chat"  # the chat WebSocket route (and the readiness probe's target)
DEFAULT_PORT = 8998  # `python -m moshi.server`'s port

SAMPLE_RATE = 24_000  # the model's audio: mono, 24 kHz
FRAME_MS = 80  # one Mimi step
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 1920
FRAME_SECONDS = FRAME_MS / 1000

Float32Array = npt.NDArray[np.float32]


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


class PromptError(ValueError):
    """A prompt PersonaPlex needs is empty (its server crashes on an empty text prompt), or the
    voice prompt names no voice file."""


VOICE_SUFFIXES = (".pt", ".wav")  # a voice embedding, or a recording the server embeds


def require_prompt(name: str, value: str) -> None:
    """The one rule for PersonaPlex prompts: neither the voice nor the text prompt is empty, and
    the voice names a .pt or .wav file (in the server's voice folder)."""
    if not value.strip():
        why = "the PersonaPlex server crashes on an empty text prompt"
        if name.startswith("voice"):
            why = "the PersonaPlex server needs a voice prompt, e.g. NATF2.pt"
        raise PromptError(f"{name} is empty: {why}")
    if name.startswith("voice") and not value.lower().endswith(VOICE_SUFFIXES):
        raise PromptError(
            f"{name} {value!r} is not a voice file: the PersonaPlex server loads a .pt"
            " embedding or a .wav recording, e.g. NATF2.pt"
        )


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
    require_prompt("text_prompt", text_prompt)
    query = urlencode({"voice_prompt": voice_prompt, "text_prompt": text_prompt}, quote_via=quote)
    return f"{base}?{query}"

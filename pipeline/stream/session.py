"""One chat session: stream one sample's frames to the server and collect its answer.

Nothing is sent before the server's ``0x00`` handshake (PersonaPlex discards it). The session ends
when every expected output frame has arrived, and only then is the socket closed; a server that
goes silent for ``stall_timeout_s`` fails the session instead of hanging it.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from pipeline.stream.ogg import OggFormatError
from pipeline.stream.opus import (
    DEFAULT_ENCODER,
    ENCODER_PRESETS,
    OggOpusDecoder,
    OggOpusEncoder,
)
from pipeline.stream.protocol import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    Float32Array,
    Kind,
    ProfileSpec,
)

# How a session can fail: a closed set, recorded as a sample's error kind
SessionErrorKind = Literal[
    "session",
    "connect",
    "handshake_timeout",
    "stall",
    "server_closed",
    "protocol",
    "profile_mismatch",
]


class SessionError(Exception):
    """A session failed; ``reason`` says why, in the session's own terms (a caller that knows
    which setting governs a timeout may add that to its message)."""

    kind: ClassVar[SessionErrorKind] = "session"

    def __init__(self, reason: str, frames_sent: int = 0, frames_received: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frames_sent = frames_sent
        self.frames_received = frames_received


class ConnectError(SessionError):
    """Refused, or closed before the handshake: worth reconnecting with backoff."""

    kind: ClassVar[SessionErrorKind] = "connect"


class HandshakeTimeout(SessionError):
    kind: ClassVar[SessionErrorKind] = "handshake_timeout"


class StallError(SessionError):
    kind: ClassVar[SessionErrorKind] = "stall"


class ServerClosedError(SessionError):
    kind: ClassVar[SessionErrorKind] = "server_closed"


class ProtocolViolation(SessionError):
    kind: ClassVar[SessionErrorKind] = "protocol"


class ProfileMismatch(SessionError):
    """The server answers as the other profile's server does: no retry can help."""

    kind: ClassVar[SessionErrorKind] = "profile_mismatch"


# A PersonaPlex session whose server went silent one frame short, with every input frame sent,
# is talking to upstream moshi (N in, N-1 out): said after this long (or 20 frame intervals,
# whichever is longer; never more than the stall timeout), not after the stall timeout
PROFILE_WAIT_S = 5.0
PROFILE_WAIT_INTERVALS = 20


@dataclass(frozen=True)
class Timeouts:
    """Every limit of one session, in seconds (the caller's settings decide them)."""

    connect_s: float  # TCP + HTTP upgrade
    handshake_s: float  # upgrade -> 0x00
    stall_s: float  # no message at all for this long mid-sample


@dataclass(frozen=True)
class TextPiece:
    text: str
    frame: int  # output frames received before this piece arrived
    time_s: float  # where that frame starts in output.wav (alignment offset included)
    wall_s: float  # seconds after the handshake when it arrived


@dataclass
class LagStats:
    p50_s: float
    p95_s: float
    max_s: float

    @classmethod
    def of(cls, lags: list[float]) -> LagStats | None:
        if not lags:
            return None
        ordered = sorted(lags)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return cls(p50_s=statistics.median(ordered), p95_s=p95, max_s=ordered[-1])


@dataclass
class SessionResult:
    audio: Float32Array  # every decoded output sample, in arrival order
    frames_sent: int
    frames_received: int
    pieces: list[TextPiece]
    handshake_s: float  # connect -> 0x00
    stream_s: float  # 0x00 -> last expected frame
    lags_s: list[float] = field(default_factory=list)  # realtime pacing only

    @property
    def lag(self) -> LagStats | None:
        return LagStats.of(self.lags_s)


def client_ssl(url: str, insecure: bool) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context()
    if insecure:  # self-signed certificates of a lab server
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _open(url: str, timeouts: Timeouts, insecure: bool) -> ClientConnection:
    try:
        return await connect(
            url,
            open_timeout=timeouts.connect_s,
            # The servers answer no ping while a session is queued or the model is busy: no
            # keepalive; the handshake and stall timeouts catch a dead server instead.
            ping_interval=None,
            ping_timeout=None,
            close_timeout=5,
            max_size=None,
            max_queue=None,
            compression=None,
            proxy=None,
            ssl=client_ssl(url, insecure),
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise ConnectError(f"cannot connect to {url.split('?', maxsplit=1)[0]}: {exc}") from exc


class _Stream:
    """State of one session's send and receive halves."""

    def __init__(self, ws: ClientConnection, frames: Float32Array, spec: ProfileSpec):
        self.ws = ws
        self.frames = frames
        self.expected = spec.expected_output_frames(int(frames.shape[0]))
        self.lag_offset = spec.output_frame_lag
        self.text_shift = 1 if spec.text_after_audio else 0
        self.sent_at: list[float] = []
        self.lags: list[float] = []
        self.pieces: list[TextPiece] = []
        self.chunks: list[Float32Array] = []
        self.decoded = 0
        self.received = 0
        self.arrivals: list[float] = []
        self.t0 = 0.0

    async def send(self, realtime: bool, encoder_preset: str) -> None:
        encoder = OggOpusEncoder(**ENCODER_PRESETS[encoder_preset])
        clock = asyncio.get_running_loop().time
        for i, frame in enumerate(self.frames):
            if realtime:  # absolute schedule from the handshake: no drift
                delay = self.t0 + i * FRAME_SECONDS - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            payload = encoder.encode(frame)
            self.sent_at.append(clock())
            await self.ws.send(bytes([Kind.AUDIO]) + payload)

    def on_audio(self, payload: bytes, decoder: OggOpusDecoder, now: float) -> None:
        pcm = decoder.feed(payload)
        if pcm.size == 0:
            return
        self.chunks.append(pcm)
        self.decoded += int(pcm.shape[0])
        while self.received < self.decoded // FRAME_SAMPLES:
            src = self.received + self.lag_offset
            if src < len(self.sent_at):
                self.lags.append(now - self.sent_at[src])
            self.arrivals.append(now)
            self.received += 1

    def wait_s(self, stall_s: float, sender: asyncio.Task[None]) -> float:
        """How long to wait for the next message: the stall timeout, or less where a silence
        already says which server this is (see PROFILE_WAIT_S)."""
        one_short = self.lag_offset == 0 and self.received == self.expected - 1
        if not (one_short and sender.done() and len(self.sent_at) == len(self.frames)):
            return stall_s
        gaps = np.diff(self.arrivals) if len(self.arrivals) > 1 else np.zeros(1)
        return min(stall_s, max(PROFILE_WAIT_S, PROFILE_WAIT_INTERVALS * float(np.median(gaps))))

    def on_text(self, payload: bytes, now: float) -> None:
        # The output frame this piece belongs to, from the order the server sends them in. A
        # fast server streamed unpaced may let text overtake buffered audio: never placed late.
        frame = max(0, self.received - self.text_shift)
        self.pieces.append(
            TextPiece(
                text=payload.decode("utf-8", errors="replace"),
                frame=frame,
                time_s=(frame + 1) * FRAME_SECONDS,  # +1: the alignment's leading silent frame
                wall_s=now - self.t0,
            )
        )


async def run_session(
    url: str,
    frames: Float32Array,
    spec: ProfileSpec,
    *,
    realtime: bool = False,
    encoder: str = DEFAULT_ENCODER,
    timeouts: Timeouts,
    insecure: bool = False,
    on_handshake: Callable[[], None] | None = None,
) -> SessionResult:
    """Stream ``frames`` (n, 1920) and return the server's output; raise SessionError on failure."""
    loop = asyncio.get_running_loop()
    t_start = time.perf_counter()
    ws = await _open(url, timeouts, insecure)
    st = _Stream(ws, frames, spec)
    sender: asyncio.Task[None] | None = None
    try:
        await _await_handshake(ws, timeouts)
        st.t0 = loop.time()
        handshake_s = time.perf_counter() - t_start
        if on_handshake is not None:
            on_handshake()
        sender = asyncio.create_task(st.send(realtime, encoder))
        await _receive(ws, st, sender, timeouts.stall_s, loop)
        if st.expected == 0:
            await sender
        stream_s = loop.time() - st.t0
        if spec.text_after_audio and st.expected > 0:
            await _drain_text(ws, st, loop)
    except SessionError as exc:
        exc.frames_sent, exc.frames_received = len(st.sent_at), st.received
        raise
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
        await ws.close()
    audio = np.concatenate(st.chunks) if st.chunks else np.zeros(0, dtype=np.float32)
    return SessionResult(
        audio=audio,
        frames_sent=len(st.sent_at),
        frames_received=st.received,
        pieces=st.pieces,
        handshake_s=handshake_s,
        stream_s=stream_s,
        lags_s=st.lags if realtime else [],
    )


async def _await_handshake(ws: ClientConnection, timeouts: Timeouts) -> None:
    """Wait for the server's ``0x00``: nothing may be sent before it."""
    try:
        first = await asyncio.wait_for(ws.recv(), timeouts.handshake_s)
    except TimeoutError:
        raise HandshakeTimeout(
            f"no handshake within {timeouts.handshake_s:.0f} s (the server is busy with"
            " another session, or hung)"
        ) from None
    except ConnectionClosed as exc:
        raise ConnectError(
            f"server closed the connection before the handshake ({_close_text(exc)});"
            " it may have crashed on the session's parameters - see its log"
        ) from exc
    if not isinstance(first, bytes) or first[:1] != bytes([Kind.HANDSHAKE]):
        raise ProtocolViolation(f"expected the 0x00 handshake first, got {_describe(first)}")


async def _receive(
    ws: ClientConnection,
    st: _Stream,
    sender: asyncio.Task[None],
    stall_s: float,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Take the server's messages until every expected output frame has arrived."""
    decoder = OggOpusDecoder()
    expected = st.expected
    while st.received < expected:
        wait_s = st.wait_s(stall_s, sender)
        try:
            msg = await asyncio.wait_for(ws.recv(), wait_s)
        except TimeoutError:
            if wait_s < stall_s:
                raise ProfileMismatch(
                    f"every input frame was sent and {st.received}/{expected} output frames"
                    f" came back, then nothing for {wait_s:.0f} s: the server answers as upstream"
                    " moshi does (one frame fewer than it is sent), not as PersonaPlex"
                ) from None
            raise StallError(
                f"no message from the server for {stall_s:.0f} s after"
                f" {st.received}/{expected} output frames"
            ) from None
        except ConnectionClosed as exc:
            raise ServerClosedError(
                f"server closed the session after {st.received}/{expected} output frames"
                f" ({_close_text(exc)})"
            ) from exc
        now = loop.time()
        if sender.done() and sender.exception() is not None:
            raise ServerClosedError(f"sending failed: {sender.exception()}")
        if not isinstance(msg, bytes) or not msg:
            raise ProtocolViolation(f"unexpected message {_describe(msg)}")
        kind, payload = msg[0], msg[1:]
        if kind == Kind.AUDIO:
            try:
                st.on_audio(payload, decoder, now)
            except OggFormatError as exc:
                raise ProtocolViolation(f"server sent invalid Ogg-Opus audio: {exc}") from exc
        elif kind == Kind.TEXT:
            st.on_text(payload, now)
        # other kinds (control, metadata, ping) are not sent by either server: ignore


TEXT_DRAIN_S = 0.2


async def _drain_text(ws: ClientConnection, st: _Stream, loop: asyncio.AbstractEventLoop) -> None:
    """moshi sends a step's text right after its audio: wait briefly for the last frame's."""
    try:
        msg = await asyncio.wait_for(ws.recv(), TEXT_DRAIN_S)
    except (TimeoutError, ConnectionClosed):
        return
    if isinstance(msg, bytes) and msg[:1] == bytes([Kind.TEXT]):
        st.on_text(msg[1:], loop.time())


def _close_text(exc: ConnectionClosed) -> str:
    if exc.rcvd is None:
        return "no close frame: connection dropped (1006)"
    return f"close code {exc.rcvd.code}{': ' + exc.rcvd.reason if exc.rcvd.reason else ''}"


def _describe(msg: object) -> str:
    if isinstance(msg, bytes):
        return f"binary message of {len(msg)} bytes starting {msg[:4].hex() or '(empty)'}"
    return f"text message {str(msg)[:40]!r}"

"""A protocol-faithful fake of the Moshi / PersonaPlex ``/api/chat`` WebSocket server.

It is a test double for the edge cases a real server cannot be made to show on demand (crashes,
stalls, queued sessions, garbage).  It is built the way the real servers are built, because some
behaviour only follows from that:

* aiohttp ``web.WebSocketResponse`` with default options (autoping on, no heartbeat): a ping is
  answered only while the handler is inside ``ws.receive()``.  A queued client (waiting for the
  global lock) or a session that stopped reading therefore gets no pong, like the real servers.
* An exception escaping the handler after the upgrade makes aiohttp close the TCP connection
  without a close frame: a ``websockets`` client sees ``ConnectionClosedError`` with code 1006.
* ``sphn.OpusStreamReader(24000)`` / ``sphn.OpusStreamWriter(24000)`` for the Ogg-Opus streams
  (the reader raises ``ValueError: unexpected ogg capture pattern`` on garbage).

Session flow, per profile (see the shared protocol notes and the servers' sources):

PersonaPlex (NVIDIA/personaplex ``moshi/moshi/server.py``):
  1. upgrade; 2. validate the query *before* the lock, in the real order: ``voice_prompt``
  (``KeyError`` if missing, ``FileNotFoundError`` if not one of the shipped voices nor an existing
  absolute path, ``IsADirectoryError`` if empty), ``text_prompt`` (``KeyError`` if missing), then
  ``request["seed"]`` (``KeyError: 'seed'`` for *any* seed parameter - the server's bug);
  3. take the lock (no socket reads while queued); 4. the system-prompt phase: poll the socket with
  10 ms receives and discard every message that arrives (pings are answered meanwhile; with
  ``prompt_step_s`` > 0 there is one poll per prompt step, as in the real server, so at most one
  message per step is discarded and a burst sent early is partly processed after ``0x00``; with
  the default 0 everything sent during the phase is dropped).  An *empty* ``text_prompt`` passes
  step 2
  and crashes half-way through this phase (``TypeError``: the server iterates over ``None`` text
  tokens after the voice prompt and the silence), i.e. only once the session holds the lock;
  5. one more 10 ms poll, then ``0x00``; 6. three loops like the real server: a receive loop feeding
  the Ogg reader, a model loop making one output frame per complete input frame (N in -> N out),
  and a sender that flushes the pending Ogg bytes every 1 ms (so several output frames can share
  one ``0x01`` message, and a text piece is sent *before* the audio of its frame).  When any loop
  ends, the others are cancelled and the socket is closed normally (1000).

Moshi (kyutai-labs/moshi 0.2.x ``moshi/server.py``): query ignored; take the lock; ``0x00`` at
  once; one loop that reads a message, decodes it and runs the model *inline* for every complete
  frame (so no pings are answered during model time); the first input frame gives no output
  (N in -> N-1 out); audio is sent before the text piece of the same frame.  Audio sent before
  ``0x00`` waits in the socket and is processed (not dropped).

Input garbage (a ``0x01`` payload that is not Ogg; the reader only notices once it holds the
27 bytes of a page header, so a shorter garbage payload fails on the *next* message):
  * moshi (sphn 0.2): ``ValueError: unexpected ogg capture pattern`` escapes the handler
    -> the client sees an abrupt close, 1006.
  * PersonaPlex (sphn 0.1) skips what is not an Ogg page and resyncs on the next capture
    pattern: the session goes on, every frame is answered (measured on NVIDIA's server at the
    pinned commit: 20 frames with a garbage message after the 6th -> 20 frames back).  The fake
    drops a payload that does not start with ``OggS`` (the client sends whole pages).

One ``0x01`` message holding more than 5 s of audio (120 000 samples): sphn 0.2's
``append_bytes`` raises ``ValueError: opus_decode_float: invalid argument``, so upstream moshi
drops the connection (1006); PersonaPlex (sphn 0.1) decodes it.  The fake does the same.  The
same limit bites a *client* that decodes PersonaPlex output with sphn 0.2: a burst sent faster
than real time comes back coalesced in a few large messages - feed them to the reader in pieces.

Output audio is deterministic: by default output frame ``j`` (0-based, per session) is a 0.25
amplitude sine of ``frame_frequency(j) = 250 + 25 * (j % 64)`` Hz; ``estimate_frame_index(pcm)``
recovers ``j % 64`` from a decoded 1920-sample frame.  With ``output="echo"`` the output frame is
the input frame that produced it (moshi: output ``j`` echoes input ``j + 1``).  Text pieces are
``" word{n}"`` (n = 0, 1, ...) sent with every ``text_every``-th output frame.

Faults are counted in output frames and fire after that many frames have been sent (0 = right
after the handshake): ``stall_after_frames`` stops all output (the socket is still read, so pings
are answered and the session ends when the client closes; ``stall_reads=False`` also stops
reading, like a hung model, so pings go unanswered), ``close_after_frames`` ends the TCP
stream without a close frame (client: 1006, after receiving every frame sent before; it is a
half-close so that the client's unread data cannot turn it into an RST that loses those frames),
``garbage_after_frames`` sends one ``0x01`` message whose payload is ``GARBAGE_PAYLOAD`` and then
carries on normally.  A fired fault is recorded in ``SessionRecord.fault``, not in ``error``.

``never_handshake`` validates, takes the lock, then neither reads nor sends; the session (and the
lock) is let go only when the TCP connection is gone (client-side abort or close timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import sphn
from aiohttp import WSMsgType, web

__all__ = [
    "FRAME_SIZE",
    "GARBAGE_PAYLOAD",
    "KNOWN_VOICES",
    "SAMPLE_RATE",
    "Behaviour",
    "FakeServer",
    "SessionRecord",
    "estimate_frame_index",
    "frame_frequency",
    "make_output_frame",
]

SAMPLE_RATE = 24_000
FRAME_SIZE = 1_920  # 80 ms at 24 kHz, one model step
KNOWN_VOICES: frozenset[str] = frozenset(
    f"{prefix}{i}.pt"
    for prefix, count in (("NATF", 4), ("NATM", 4), ("VARF", 5), ("VARM", 5))
    for i in range(count)
)
VOICE_DIR = "/fake/voices"  # where the fake pretends the voices were extracted
GARBAGE_PAYLOAD = b"this is not an Ogg page, just garbage bytes"
_POLL_S = 0.01  # PersonaPlex is_alive(): wait_for(ws.receive(), timeout=0.01)
_TICK_S = 0.001  # PersonaPlex model/send loops poll every 1 ms
_CLOSED_POLL_S = 0.02
_FEED_CHUNK = 2048
_END_TYPES = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)

FloatArray = npt.NDArray[np.float32]


def frame_frequency(index: int) -> float:
    """Frequency (Hz) of the sine the fake sends as output frame ``index``."""
    return 250.0 + 25.0 * (index % 64)


def make_output_frame(index: int) -> FloatArray:
    """The 1920-sample frame the fake sends as output frame ``index`` (``output="sine"``)."""
    t = np.arange(FRAME_SIZE, dtype=np.float64) / SAMPLE_RATE
    return (0.25 * np.sin(2.0 * np.pi * frame_frequency(index) * t)).astype(np.float32)


def estimate_frame_index(pcm: npt.NDArray[np.floating]) -> int:
    """``index % 64`` of a decoded output frame (uses its last 1536 samples, past codec delay)."""
    seg = np.asarray(pcm, dtype=np.float64)[-1536:]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n=SAMPLE_RATE))  # 1 Hz bins
    peak_hz = float(np.argmax(spectrum))
    return round((peak_hz - 250.0) / 25.0) % 64


@dataclass
class Behaviour:
    """What one session of the fake does.  See the module docstring for the details."""

    profile: Literal["personaplex", "moshi"] = "personaplex"
    # PersonaPlex: duration of the system-prompt phase before 0x00; the socket is polled with
    # 10 ms receives and everything the client sends meanwhile is discarded (and counted).
    prompt_phase_s: float = 0.0
    # PersonaPlex: model time of one prompt step.  0 = poll continuously (everything sent during
    # the phase is discarded).  > 0 = like the real server, which does one 10 ms poll per prompt
    # step, so at most one message per step is discarded and the rest is processed afterwards.
    prompt_step_s: float = 0.0
    never_handshake: bool = False  # take the lock, then never read nor send (until TCP is gone)
    frame_delay_s: float = 0.0  # model time per frame (asyncio sleep)
    stall_after_frames: int | None = None  # then send nothing more, keep the connection open
    stall_reads: bool = True  # while stalled keep reading the socket (pongs) or not (hung model)
    close_after_frames: int | None = None  # then close TCP without a close frame (1006)
    garbage_after_frames: int | None = None  # then send one non-Ogg 0x01 message, carry on
    text_every: int = 4  # a 0x02 " word{n}" piece with every k-th output frame; 0 = never
    output: Literal["sine", "echo"] = "sine"
    # PersonaPlex: an absolute voice_prompt path that exists is accepted (os.path.join with an
    # absolute path discards the voice directory).  A later upstream commit rejects it instead
    # (ValueError); set False to emulate that.
    allow_absolute_voice_path: bool = True


@dataclass
class SessionRecord:
    """What happened in one upgraded session (plain HTTP probes do not create one)."""

    index: int
    profile: str
    query: dict[str, str]
    discarded_before_handshake: int = 0  # messages dropped by the prompt-phase polls
    frames_in: int = 0  # complete 1920-sample input frames run through the "model"
    frames_out: int = 0  # output frames produced (moshi: frames_in - 1)
    texts_sent: int = 0
    # Crash reason, "ExcType: message".  A send that fails because the client already went away
    # (ConnectionResetError) is not recorded; faults are recorded in ``fault``, not here.
    error: str | None = None
    handshake_sent: bool = False
    lock_wait_s: float | None = None  # None: never got the lock
    fault: str | None = None  # "stall" / "close" / "garbage" once fired
    ended: bool = False
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None


class _Session:
    """Per-session state shared by the loops of one handler."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, rec: SessionRecord, b: Behaviour
    ) -> None:
        self.request = request
        self.ws = ws
        self.rec = rec
        self.b = b
        self.reader = sphn.OpusStreamReader(SAMPLE_RATE)
        self.writer = sphn.OpusStreamWriter(SAMPLE_RATE)
        self.pcm = np.zeros(0, dtype=np.float32)
        self.pending = bytearray()  # PersonaPlex: Ogg bytes not flushed yet
        self.deaf = False  # stalled without reading
        self.frames_new = asyncio.Event()

    # -- helpers -------------------------------------------------------------------------------
    def take_frame(self) -> FloatArray | None:
        if self.pcm.shape[-1] < FRAME_SIZE:
            return None
        frame, self.pcm = self.pcm[:FRAME_SIZE], self.pcm[FRAME_SIZE:]
        return frame

    def feed(self, payload: bytes, *, chunked: bool) -> None:
        """Decode an 0x01 payload.  sphn 0.2's ``append_bytes`` fails with ``ValueError:
        opus_decode_float: invalid argument`` when one call holds more than 120 000 samples (5 s);
        upstream moshi (sphn 0.2) has that limit per message, PersonaPlex (sphn 0.1, one packet at
        a time) has not: ``chunked`` feeds 2 KiB at a time to avoid it."""
        step = _FEED_CHUNK if chunked else max(len(payload), 1)
        for i in range(0, len(payload), step):
            pcm = self.reader.append_bytes(payload[i : i + step])
            if pcm.shape[-1]:
                self.pcm = np.concatenate((self.pcm, np.asarray(pcm, dtype=np.float32)))

    def produce(self, in_frame: FloatArray) -> tuple[bytes, str | None]:
        """Run the model on one input frame worth of output: Ogg bytes and maybe a text piece."""
        j = self.rec.frames_out
        pcm = in_frame if self.b.output == "echo" else make_output_frame(j)
        data = bytes(self.writer.append_pcm(np.ascontiguousarray(pcm, dtype=np.float32)))
        self.rec.frames_out += 1
        text = None
        if self.b.text_every > 0 and self.rec.frames_out % self.b.text_every == 0:
            text = f" word{self.rec.texts_sent}"
            self.rec.texts_sent += 1
        return data, text

    def due(self, limit: int | None) -> bool:
        return limit is not None and self.rec.frames_out == limit

    async def wait_transport_gone(self) -> None:
        """Wait, without reading the socket, until the TCP connection is closed."""
        while True:
            transport = self.request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(_CLOSED_POLL_S)

    async def apply_faults(self) -> bool:
        """Fire the faults due at the current output count. True when output must stop."""
        b, rec = self.b, self.rec
        if self.due(b.garbage_after_frames):
            await self.flush()
            await self.ws.send_bytes(b"\x01" + GARBAGE_PAYLOAD)
            rec.fault = "garbage"
        if self.due(b.close_after_frames):
            await self.flush()
            rec.fault = "close"
            transport = self.request.transport
            if transport is not None:
                # TCP FIN after the queued bytes, no WebSocket close frame: the client gets every
                # frame sent so far, then 1006.  Half-close rather than close() so that unread
                # client data cannot turn it into an RST (which can make the client lose the
                # frames still in its receive buffer); the socket is reaped when the client
                # hangs up, or after 2 s.
                if transport.can_write_eof():
                    transport.write_eof()
                    asyncio.get_running_loop().call_later(2.0, transport.close)
                else:
                    transport.close()
            return True
        if self.due(b.stall_after_frames):
            await self.flush()
            rec.fault = "stall"
            return True
        return False

    async def flush(self) -> None:
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            await self.ws.send_bytes(b"\x01" + data)


class FakeServer:
    """The fake server, run by aiohttp in a background thread with its own event loop.

    ``behaviour`` is one ``Behaviour`` for every session or a function of the session index
    (0, 1, ... counting upgraded sessions only).  Use as a context manager; the port is bound
    before ``__enter__`` returns.
    """

    def __init__(
        self,
        behaviour: Behaviour | Callable[[int], Behaviour] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._behaviour = behaviour if behaviour is not None else Behaviour()
        self.host = host
        self.port = port
        self.sessions: list[SessionRecord] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._lock: asyncio.Lock | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    # -- public API ----------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def chat_url(self) -> str:
        return f"{self.url}/api/chat"

    def behaviour_for(self, index: int) -> Behaviour:
        if isinstance(self._behaviour, Behaviour):
            return self._behaviour
        return self._behaviour(index)

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self._run, name="fake-moshi-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("fake server did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("fake server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_sessions(
        self, n: int, timeout: float = 5.0, *, ended: bool = True
    ) -> list[SessionRecord]:
        """Block until ``n`` sessions have ended (or merely started, ``ended=False``)."""

        def ready() -> bool:
            return sum(1 for s in self.sessions if s.ended or not ended) >= n

        with self._cond:
            if not self._cond.wait_for(ready, timeout=timeout):
                state = [(s.index, s.ended, s.error) for s in self.sessions]
                raise TimeoutError(f"wanted {n} sessions (ended={ended}), have {state}")
            return list(self.sessions)

    async def async_wait_sessions(
        self, n: int, wait_s: float = 5.0, *, ended: bool = True
    ) -> list[SessionRecord]:
        """``wait_sessions`` for async tests (runs in a worker thread)."""
        return await asyncio.to_thread(self.wait_sessions, n, wait_s, ended=ended)

    # -- server thread -------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _start(self) -> None:
        self._lock = asyncio.Lock()
        app = web.Application()
        app.router.add_get("/api/chat", self._handle_chat)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for addr in self._runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break

    async def _shutdown(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the handler ---------------------------------------------------------------------------
    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()  # defaults, like both real servers
        await ws.prepare(request)  # no Upgrade header -> HTTPBadRequest -> 400
        with self._cond:
            index = len(self.sessions)
        behaviour = self.behaviour_for(index)
        rec = SessionRecord(
            index=index,
            profile=behaviour.profile,
            query={k: request.query[k] for k in request.query},
        )
        with self._cond:
            self.sessions.append(rec)
            self._cond.notify_all()
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        st = _Session(request, ws, rec, behaviour)
        try:
            if behaviour.profile == "personaplex":
                await self._personaplex(st)
            else:
                await self._moshi(st)
        except asyncio.CancelledError:
            rec.error = rec.error or "cancelled (server shutdown)"
            raise
        except ConnectionResetError:
            raise  # a send raced with the client's close: not a crash of the server's making
        except Exception as exc:
            # Like the real servers: the exception escapes the handler and aiohttp drops the
            # TCP connection without a close frame (client: 1006).  Keep the first reason.
            rec.error = rec.error or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if task is not None:
                self._handlers.discard(task)
            rec.ended_at = time.monotonic()
            with self._cond:
                rec.ended = True
                self._cond.notify_all()
        return ws

    async def _take_lock(self, st: _Session) -> asyncio.Lock:
        assert self._lock is not None
        t0 = time.monotonic()
        await self._lock.acquire()  # a queued client waits here; nothing reads its socket
        st.rec.lock_wait_s = time.monotonic() - t0
        return self._lock

    # -- PersonaPlex -----------------------------------------------------------------------------
    def _pp_validate(self, st: _Session) -> bool:
        """Query checks done before the lock; returns whether text_prompt is empty."""
        request, b = st.request, st.b
        voice = request.query["voice_prompt"]  # KeyError when missing
        if os.path.isabs(voice):
            if not b.allow_absolute_voice_path:
                raise ValueError(f"Invalid voice prompt filename: {voice!r}")
            found = os.path.exists(voice)
        else:
            found = voice == "" or voice in KNOWN_VOICES  # "" joins to the directory itself
        if not found:
            raise FileNotFoundError(f"Requested voice prompt '{voice}' not found in '{VOICE_DIR}'")
        if voice == "":
            raise IsADirectoryError(f"[Errno 21] Is a directory: '{VOICE_DIR}/'")
        empty_text = len(request.query["text_prompt"]) == 0  # KeyError when missing
        if "seed" in request.query:
            _ = request["seed"]  # the server's bug: request state, not the query -> KeyError
        return empty_text

    async def _pp_is_alive(self, st: _Session) -> bool:
        """One 10 ms poll; a message that arrives is discarded."""
        if st.ws.closed:
            return False
        try:
            msg = await asyncio.wait_for(st.ws.receive(), timeout=_POLL_S)
        except TimeoutError:
            return True
        except ConnectionError:
            return False
        if msg.type in _END_TYPES:
            return False
        st.rec.discarded_before_handshake += 1
        return True

    async def _personaplex(self, st: _Session) -> None:
        empty_text = self._pp_validate(st)
        lock = await self._take_lock(st)
        try:
            if st.b.never_handshake:
                await st.wait_transport_gone()
                return
            loop = asyncio.get_running_loop()
            start = loop.time()
            deadline = start + st.b.prompt_phase_s
            crash_at = start + st.b.prompt_phase_s / 2  # voice prompt + silence, then text
            alive = True
            while alive and loop.time() < deadline:
                if st.b.prompt_step_s > 0:
                    await asyncio.sleep(min(st.b.prompt_step_s, deadline - loop.time()))
                if empty_text and loop.time() >= crash_at:
                    break
                alive = await self._pp_is_alive(st)
            if empty_text:
                raise TypeError("'NoneType' object is not iterable")
            if not alive or not await self._pp_is_alive(st):
                return  # client gone during the prompt phase: no handshake
            await st.ws.send_bytes(b"\x00")
            st.rec.handshake_sent = True
            await self._pp_loops(st)
        finally:
            lock.release()

    async def _pp_loops(self, st: _Session) -> None:
        tasks = [
            asyncio.create_task(self._pp_recv(st)),
            asyncio.create_task(self._pp_model(st)),
            asyncio.create_task(self._pp_send(st)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if st.deaf:  # stalled without reading: stop the receive loop, wait for TCP to go
                tasks[0].cancel()
                await st.wait_transport_gone()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            exc = None if t.cancelled() else t.exception()
            if exc is not None and not isinstance(exc, ConnectionResetError):
                st.rec.error = st.rec.error or f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            await st.ws.close()  # normal close (1000) even when a loop crashed

    async def _pp_recv(self, st: _Session) -> None:
        while True:
            msg = await st.ws.receive()
            if msg.type in _END_TYPES:
                return
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            data: bytes = msg.data
            if data[0] != 1 or not data[1:].startswith(b"OggS"):
                continue  # sphn 0.1 skips what is not a page and resyncs on the next one
            st.feed(data[1:], chunked=True)
            st.frames_new.set()

    async def _pp_model(self, st: _Session) -> None:
        if await st.apply_faults():
            return await self._stalled(st)
        while True:
            await st.frames_new.wait()
            st.frames_new.clear()
            while (frame := st.take_frame()) is not None:
                st.rec.frames_in += 1
                if st.b.frame_delay_s > 0:
                    await asyncio.sleep(st.b.frame_delay_s)
                data, text = st.produce(frame)
                if text is not None:
                    await st.ws.send_bytes(b"\x02" + text.encode())
                st.pending += data
                if await st.apply_faults():
                    return await self._stalled(st)
            await asyncio.sleep(_TICK_S)

    async def _stalled(self, st: _Session) -> None:
        """Output stopped for good (stall or close fault)."""
        if st.rec.fault == "stall" and not st.b.stall_reads:
            st.deaf = True
            return  # the main loop then waits for TCP to go without reading
        await asyncio.Future()  # the receive loop goes on; the session ends when it does

    async def _pp_send(self, st: _Session) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            await st.flush()

    # -- moshi -----------------------------------------------------------------------------------
    async def _moshi(self, st: _Session) -> None:
        lock = await self._take_lock(st)
        try:
            if st.b.never_handshake:
                await st.wait_transport_gone()
                return
            await st.ws.send_bytes(b"\x00")
            st.rec.handshake_sent = True
            await self._moshi_recv(st)
        finally:
            lock.release()

    async def _moshi_recv(self, st: _Session) -> None:
        skip_first = True
        stopped = await st.apply_faults()
        if stopped and st.rec.fault == "stall" and not st.b.stall_reads:
            await st.wait_transport_gone()
            return
        async for msg in st.ws:  # ends on CLOSE / CLOSING / CLOSED
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type != WSMsgType.BINARY or not msg.data or msg.data[0] != 1:
                continue
            # ValueError on garbage (or > 5 s in one message) escapes the handler -> 1006
            st.feed(msg.data[1:], chunked=False)
            while not stopped and (frame := st.take_frame()) is not None:
                st.rec.frames_in += 1
                if st.b.frame_delay_s > 0:
                    await asyncio.sleep(st.b.frame_delay_s)  # inline: nothing is read meanwhile
                if skip_first:  # the first step returns no tokens
                    skip_first = False
                    continue
                data, text = st.produce(frame)
                await st.ws.send_bytes(b"\x01" + data)
                if text is not None:
                    await st.ws.send_bytes(b"\x02" + text.encode())
                stopped = await st.apply_faults()
                if stopped and st.rec.fault == "stall" and not st.b.stall_reads:
                    await st.wait_transport_gone()
                    return

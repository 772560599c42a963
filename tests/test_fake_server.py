"""The fake Moshi / PersonaPlex server behaves like the real ones, driven by a raw client."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

import numpy as np
import pytest
import sphn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tests.fakes import (
    FRAME_SIZE,
    GARBAGE_PAYLOAD,
    SAMPLE_RATE,
    Behaviour,
    FakeServer,
    estimate_frame_index,
    make_output_frame,
)

PP_QUERY = {"voice_prompt": "NATF2.pt", "text_prompt": "You enjoy having a good conversation."}
Profile = Literal["personaplex", "moshi"]


class Client:
    """A minimal raw client: Ogg-Opus in, Ogg-Opus + text out, nothing clever."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._writer = sphn.OpusStreamWriter(SAMPLE_RATE)
        self._reader = sphn.OpusStreamReader(SAMPLE_RATE)
        self.pcm = np.zeros(0, dtype=np.float32)
        self.texts: list[str] = []
        self.audio_payloads: list[bytes] = []
        self.sent = 0

    @property
    def frames(self) -> int:
        return int(self.pcm.size // FRAME_SIZE)

    def frame_indices(self) -> list[int]:
        return [
            estimate_frame_index(self.pcm[i * FRAME_SIZE : (i + 1) * FRAME_SIZE])
            for i in range(self.frames)
        ]

    async def handshake(self, timeout_s: float = 2.0) -> None:
        msg = await asyncio.wait_for(self.ws.recv(), timeout_s)
        assert msg == b"\x00"

    async def send_frames(self, n: int) -> None:
        """Send n frames; input frame k is the fake's own output sine k (checks echo mode)."""
        for _ in range(n):
            data = self._writer.append_pcm(make_output_frame(self.sent))
            self.sent += 1
            await self.ws.send(b"\x01" + data)

    async def next(self) -> None:
        msg = await self.ws.recv()
        assert isinstance(msg, bytes)
        assert msg[0] in (1, 2), msg[:8]
        if msg[0] == 2:
            self.texts.append(msg[1:].decode())
            return
        payload = msg[1:]
        self.audio_payloads.append(payload)
        # PersonaPlex coalesces output: one message can hold many seconds of audio, more than
        # sphn 0.2's append_bytes decodes in one call (5 s), so feed it in pieces.
        for i in range(0, len(payload), 2048):
            pcm = self._reader.append_bytes(payload[i : i + 2048])
            self.pcm = np.concatenate((self.pcm, np.asarray(pcm, dtype=np.float32)))

    async def collect(self, n_frames: int, timeout_s: float = 3.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.frames < n_frames:
                await self.next()

    async def quiet(self, quiet_s: float) -> int:
        """Read until nothing arrives for quiet_s; returns how many messages came."""
        count = 0
        while True:
            try:
                await asyncio.wait_for(self.next(), quiet_s)
            except TimeoutError:
                return count
            count += 1


async def pong_within(ws: ClientConnection, wait_s: float) -> bool:
    waiter = await ws.ping()
    try:
        await asyncio.wait_for(asyncio.shield(waiter), wait_s)
    except TimeoutError:
        return False
    return True


@asynccontextmanager
async def chat(
    srv: FakeServer, query: dict[str, str] | None = PP_QUERY, close_timeout: float = 0.5
) -> AsyncIterator[Client]:
    url = srv.chat_url + (f"?{urlencode(query)}" if query else "")
    async with connect(
        url, ping_interval=None, close_timeout=close_timeout, max_size=None, open_timeout=3
    ) as ws:
        yield Client(ws)


def behaviour(profile: Profile, **kw: object) -> Behaviour:
    return Behaviour(profile=profile, **kw)  # type: ignore[arg-type]


# -- HTTP ------------------------------------------------------------------------------------


def test_plain_get_is_400_and_other_paths_404() -> None:
    with FakeServer(Behaviour()) as srv:
        assert srv.address == f"127.0.0.1:{srv.port}"
        assert srv.url == f"ws://127.0.0.1:{srv.port}"
        for path, status in (("/api/chat", 400), ("/", 404), ("/api/other", 404)):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=3)
            conn.request("GET", path)
            assert conn.getresponse().status == status, path
            conn.close()
        assert srv.sessions == []  # a health probe is not a session


# -- PersonaPlex query validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({}, "KeyError: 'voice_prompt'"),
        ({"voice_prompt": "NATF2.pt"}, "KeyError: 'text_prompt'"),
        ({**PP_QUERY, "seed": "42"}, "KeyError: 'seed'"),
        ({**PP_QUERY, "seed": "-1"}, "KeyError: 'seed'"),
        ({**PP_QUERY, "voice_prompt": "NOPE.pt"}, "FileNotFoundError"),
        ({**PP_QUERY, "voice_prompt": "NATF2"}, "FileNotFoundError"),
        ({**PP_QUERY, "voice_prompt": "/no/such/voice.pt"}, "FileNotFoundError"),
    ],
)
async def test_personaplex_bad_query_drops_connection_without_handshake(
    query: dict[str, str], error: str
) -> None:
    with FakeServer(Behaviour()) as srv:
        async with chat(srv, query) as c:
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(c.ws.recv(), 2)
            assert info.value.rcvd is None  # no close frame: abrupt
            assert c.ws.close_code == 1006
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.error is not None and rec.error.startswith(error)
        assert not rec.handshake_sent
        assert rec.lock_wait_s is None  # crashed before the lock
        # the server stays up for the next client
        async with chat(srv) as c:
            await c.handshake()


async def test_personaplex_empty_text_prompt_crashes_inside_the_prompt_phase() -> None:
    with FakeServer(Behaviour(prompt_phase_s=0.4)) as srv:
        async with chat(srv, {**PP_QUERY, "text_prompt": ""}) as c:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(c.ws.recv(), 2)
            assert loop.time() - t0 >= 0.15  # half the prompt phase ran first
            assert c.ws.close_code == 1006
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.error is not None and rec.error.startswith("TypeError")
        assert rec.lock_wait_s is not None  # unlike the other bad queries: after the lock


async def test_personaplex_accepts_existing_absolute_voice_path(tmp_path: Path) -> None:
    voice = tmp_path / "custom.wav"
    voice.write_bytes(b"RIFF")
    with FakeServer(Behaviour()) as srv:
        async with chat(srv, {**PP_QUERY, "voice_prompt": str(voice)}) as c:
            await c.handshake()


async def test_moshi_ignores_query() -> None:
    with FakeServer(Behaviour(profile="moshi")) as srv:
        async with chat(srv, {"seed": "1"}) as c:
            await c.handshake()
        async with chat(srv, None) as c:
            await c.handshake()


# -- prompt phase ------------------------------------------------------------------------------


async def test_personaplex_prompt_phase_discards_early_audio() -> None:
    with FakeServer(Behaviour(prompt_phase_s=0.5)) as srv:
        async with chat(srv) as c:
            await c.send_frames(3)  # before 0x00: thrown away, Ogg header pages included
            await c.handshake()
            await c.send_frames(5)
            await c.collect(5)
            assert await c.quiet(0.2) == 0
            assert c.frames == 5
            assert c.frame_indices() == [0, 1, 2, 3, 4]
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.discarded_before_handshake == 3
        assert (rec.frames_in, rec.frames_out) == (5, 5)
        assert rec.error is None


async def test_personaplex_prompt_steps_discard_one_message_per_step() -> None:
    # The real server polls once per prompt step: a burst sent early is only partly discarded.
    with FakeServer(Behaviour(prompt_phase_s=0.3, prompt_step_s=0.1)) as srv:
        async with chat(srv) as c:
            await c.send_frames(12)
            await c.handshake()
            await asyncio.sleep(0.3)
            await c.quiet(0.2)
        (rec,) = await srv.async_wait_sessions(1)
        assert 1 <= rec.discarded_before_handshake <= 5
        assert rec.frames_in == 12 - rec.discarded_before_handshake
        assert c.frames == rec.frames_out == rec.frames_in


# -- frame accounting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "lost"), [("personaplex", 0), ("moshi", 1)])
async def test_frame_counts_and_text(profile: Profile, lost: int) -> None:
    n = 200
    with FakeServer(behaviour(profile)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await c.send_frames(n)
            await c.collect(n - lost)
            elapsed = loop.time() - t0
            assert await c.quiet(0.2) == 0
        (rec,) = await srv.async_wait_sessions(1)
    assert c.frames == n - lost
    assert c.frame_indices() == [j % 64 for j in range(n - lost)]
    assert c.texts == [f" word{k}" for k in range((n - lost) // 4)]
    assert (rec.frames_in, rec.frames_out, rec.texts_sent) == (n, n - lost, len(c.texts))
    assert elapsed < 2.0  # a few hundred frames per second at least


@pytest.mark.parametrize(("profile", "shift"), [("personaplex", 0), ("moshi", 1)])
async def test_echo_output(profile: Profile, shift: int) -> None:
    with FakeServer(behaviour(profile, output="echo", text_every=0)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(8)
            await c.collect(8 - shift)
    assert c.frame_indices() == [j + shift for j in range(8 - shift)]


async def test_moshi_buffers_audio_sent_before_handshake() -> None:
    with FakeServer(Behaviour(profile="moshi")) as srv:
        async with chat(srv, None) as c:
            await c.send_frames(6)
            await c.handshake()
            await c.collect(5)
            assert await c.quiet(0.2) == 0
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.discarded_before_handshake == 0
        assert (rec.frames_in, rec.frames_out) == (6, 5)


# -- one session at a time -------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_second_client_is_queued_and_gets_no_pong(profile: Profile) -> None:
    with FakeServer(behaviour(profile)) as srv:
        async with chat(srv) as first:
            await first.handshake()
            async with chat(srv) as second:  # the upgrade itself succeeds at once
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(second.ws.recv(), 0.3)  # no 0x00 while queued
                waiter = await second.ws.ping()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), 0.3)  # nobody reads it
                assert await pong_within(first.ws, 1.0)  # the active session is read
                await first.ws.close()
                await second.handshake()
                await asyncio.wait_for(waiter, 1.0)  # the queued ping is answered now
                await second.send_frames(3)
                await second.collect(3 - (profile == "moshi"))
        recs = await srv.async_wait_sessions(2)
    assert recs[1].lock_wait_s is not None and recs[1].lock_wait_s >= 0.5


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_stall_keeps_reading(profile: Profile) -> None:
    with FakeServer(behaviour(profile, stall_after_frames=3)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(10)
            await c.collect(3)
            await c.quiet(0.4)
            assert c.frames == 3
            assert await pong_within(c.ws, 1.0)
        (rec,) = await srv.async_wait_sessions(1)
        assert (rec.fault, rec.frames_out, rec.error) == ("stall", 3, None)


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_stall_without_reads_gets_no_pong(profile: Profile) -> None:
    with FakeServer(behaviour(profile, stall_after_frames=2, stall_reads=False)) as srv:
        async with chat(srv, close_timeout=0.3) as c:
            await c.handshake()
            await c.send_frames(6)
            await c.collect(2)
            await c.quiet(0.3)
            assert c.frames == 2
            assert not await pong_within(c.ws, 0.3)
        # the client's close times out and drops TCP; the server notices and ends the session
        (rec,) = await srv.async_wait_sessions(1, 3.0)
        assert rec.fault == "stall"


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_close_fault_is_abrupt(profile: Profile) -> None:
    # frame_delay_s: the client is done sending before the fault, so that its sends cannot fail
    with FakeServer(behaviour(profile, close_after_frames=3, frame_delay_s=0.03)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(10)
            with pytest.raises(ConnectionClosedError) as info:
                await c.collect(10)
            assert info.value.rcvd is None
            assert c.ws.close_code == 1006
            assert c.frames == 3
        (rec,) = await srv.async_wait_sessions(1)
        assert (rec.fault, rec.frames_out, rec.error) == ("close", 3, None)


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_garbage_fault_sends_non_ogg_payload(profile: Profile) -> None:
    with FakeServer(behaviour(profile, garbage_after_frames=2, text_every=0)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(6)
            with pytest.raises(ValueError, match="capture pattern"):
                await c.collect(5)
            assert c.frames == 2
            assert c.audio_payloads[-1] == GARBAGE_PAYLOAD
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.fault == "garbage"
        assert rec.error is None


async def test_personaplex_skips_client_garbage_and_carries_on() -> None:
    # as NVIDIA's server does (sphn 0.1 resyncs on the next page; measured on the real one)
    with FakeServer(Behaviour(text_every=0)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(2)
            await c.ws.send(b"\x01" + GARBAGE_PAYLOAD)  # >= 27 bytes: a page header
            await c.send_frames(3)
            await c.collect(5)  # every frame answered, garbage or not
            assert c.frames == 5
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.error is None and rec.frames_in == 5


async def test_moshi_client_garbage_drops_connection() -> None:
    with FakeServer(Behaviour(profile="moshi")) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.send_frames(3)
            await c.collect(2)
            await c.ws.send(b"\x01" + GARBAGE_PAYLOAD)  # >= 27 bytes: a page header
            with pytest.raises(ConnectionClosedError) as info:
                await asyncio.wait_for(c.quiet(2.0), 3.0)
            assert info.value.rcvd is None
            assert c.ws.close_code == 1006
        (rec,) = await srv.async_wait_sessions(1)
        assert rec.error is not None
        assert rec.error.startswith("ValueError: unexpected ogg capture pattern")
        async with chat(srv) as c:  # still serving
            await c.handshake()


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_never_handshake_then_next_session_succeeds(profile: Profile) -> None:
    def pick(index: int) -> Behaviour:
        return behaviour(profile, never_handshake=index == 0)

    with FakeServer(pick) as srv:
        async with chat(srv, close_timeout=0.3) as c:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.ws.recv(), 0.3)
            assert not await pong_within(c.ws, 0.2)
        async with chat(srv) as c:  # gets the lock once the first TCP connection is gone
            await c.handshake(3.0)
            await c.send_frames(3)
            await c.collect(3 - (profile == "moshi"))
        recs = await srv.async_wait_sessions(2)
    assert not recs[0].handshake_sent and recs[0].frames_out == 0
    assert recs[1].handshake_sent and recs[1].error is None


async def test_frame_delay_paces_output() -> None:
    with FakeServer(Behaviour(frame_delay_s=0.05, text_every=0)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await c.send_frames(6)
            await c.collect(6)
            assert loop.time() - t0 >= 0.25


@pytest.mark.parametrize("profile", ["personaplex", "moshi"])
async def test_one_message_longer_than_5_s(profile: Profile) -> None:
    # sphn 0.2 (upstream moshi) decodes at most 120 000 samples per append_bytes call; sphn 0.1
    # (PersonaPlex) decodes packet by packet and has no such limit.
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    blob = b"".join(writer.append_pcm(make_output_frame(k)) for k in range(70))  # 5.6 s
    with FakeServer(behaviour(profile, text_every=0)) as srv:
        async with chat(srv) as c:
            await c.handshake()
            await c.ws.send(b"\x01" + blob)
            if profile == "personaplex":
                await c.collect(70)
            else:
                with pytest.raises(ConnectionClosedError):
                    await c.collect(69)
                assert c.ws.close_code == 1006
        (rec,) = await srv.async_wait_sessions(1)
    if profile == "moshi":
        assert rec.error == "ValueError: opus_decode_float: invalid argument"
    else:
        assert (rec.frames_out, rec.error) == (70, None)

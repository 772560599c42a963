"""`run_session` on its own, against the protocol-faithful fake server: what one session returns,
and how each way of failing is reported (kind, reason, frames counted so far)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stream.protocol import FRAME_SAMPLES, PROFILE_SPECS, session_url
from pipeline.stream.session import (
    ConnectError,
    HandshakeTimeout,
    ProtocolViolation,
    ServerClosedError,
    SessionError,
    StallError,
    Timeouts,
    run_session,
)
from tests.fakes.fake_server import Behaviour, FakeServer, estimate_frame_index

TIMEOUTS = Timeouts(connect_s=5, handshake_s=5, stall_s=5)
N = 10


def frames(n: int = N) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((n, FRAME_SAMPLES))).astype(np.float32)


def url(srv: FakeServer, profile: str = "personaplex") -> str:
    return session_url(srv.address, profile, "NATF2.pt", "You are a test.")


async def test_personaplex_n_frames_in_n_out_text_and_handshake_count() -> None:
    calls: list[int] = []
    with FakeServer(Behaviour(prompt_phase_s=0.2)) as srv:
        result = await run_session(
            url(srv),
            frames(),
            PROFILE_SPECS["personaplex"],
            timeouts=TIMEOUTS,
            on_handshake=lambda: calls.append(1),
        )
        (record,) = srv.sessions
    assert calls == [1]  # told once, at the 0x00
    assert record.discarded_before_handshake == 0  # nothing sent before 0x00
    assert result.frames_sent == result.frames_received == N
    assert result.audio.shape == (N * FRAME_SAMPLES,)
    for j in range(N):  # output frame j, in order
        assert estimate_frame_index(result.audio[j * FRAME_SAMPLES : (j + 1) * FRAME_SAMPLES]) == j
    assert [p.text for p in result.pieces] == [" word0", " word1"]  # every 4th frame
    # PersonaPlex sends a piece before its frame's audio: never placed after that frame
    assert all(p.frame <= 4 * k + 3 for k, p in enumerate(result.pieces))
    assert result.lag is None and result.handshake_s > 0 and result.stream_s > 0


async def test_moshi_n_minus_one_with_trailing_text_drained() -> None:
    with FakeServer(Behaviour(profile="moshi", text_every=N - 1)) as srv:
        result = await run_session(
            url(srv, "moshi"), frames(), PROFILE_SPECS["moshi"], timeouts=TIMEOUTS
        )
    assert (result.frames_sent, result.frames_received) == (N, N - 1)
    # the last output frame's text comes after its audio: the drain still catches it
    assert [p.frame for p in result.pieces] == [N - 2]  # the last of N - 1 frames


async def test_realtime_records_one_lag_per_output_frame() -> None:
    with FakeServer(Behaviour()) as srv:
        result = await run_session(
            url(srv), frames(5), PROFILE_SPECS["personaplex"], realtime=True, timeouts=TIMEOUTS
        )
    assert len(result.lags_s) == 5 and all(x >= 0 for x in result.lags_s)
    lag = result.lag
    assert lag is not None and lag.p50_s <= lag.p95_s <= lag.max_s
    assert result.stream_s >= 4 * 0.08  # paced: frame i leaves no earlier than i x 80 ms


@pytest.mark.parametrize(
    ("behaviour", "error", "kind", "text", "received"),
    [
        (Behaviour(close_after_frames=3), ServerClosedError, "server_closed", "after 3/10", 3),
        (Behaviour(stall_after_frames=2), StallError, "stall", "no message from the server", 2),
        (Behaviour(garbage_after_frames=2), ProtocolViolation, "protocol", "invalid Ogg", 2),
        (Behaviour(never_handshake=True), HandshakeTimeout, "handshake_timeout", "no handshake", 0),
    ],
)
async def test_each_failure_has_its_kind_reason_and_counts(
    behaviour: Behaviour, error: type[SessionError], kind: str, text: str, received: int
) -> None:
    short = Timeouts(connect_s=5, handshake_s=1, stall_s=1)
    with FakeServer(behaviour) as srv, pytest.raises(error) as info:
        await run_session(url(srv), frames(), PROFILE_SPECS["personaplex"], timeouts=short)
    exc = info.value
    assert exc.kind == kind and text in exc.reason
    assert exc.frames_received == received
    # the session's own words: which command-line flag governs a limit is the caller's to say
    assert "--" not in exc.reason


async def test_refused_and_closed_before_handshake_are_connect_errors() -> None:
    with FakeServer(Behaviour()) as srv:
        address = srv.address
        bad_voice = session_url(address, "personaplex", "NOPE.pt", "x")
        with pytest.raises(ConnectError, match="closed the connection before the handshake"):
            await run_session(bad_voice, frames(), PROFILE_SPECS["personaplex"], timeouts=TIMEOUTS)
    with pytest.raises(ConnectError, match="cannot connect"):  # the server is gone now
        await run_session(url_of(address), frames(), PROFILE_SPECS["moshi"], timeouts=TIMEOUTS)


def url_of(address: str) -> str:
    return session_url(address, "moshi", "", "")

"""Smoke test: a minimal raw client against the real upstream moshi server (tiny random model)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import sphn
import websockets

from tests.real_server import RunningServer

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 1920  # 80 ms at 24 kHz
N_FRAMES = 25
HANDSHAKE_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 15.0
DRAIN_S = 0.5  # after the last audio frame: its text message follows it


def tone(n_samples: int, freq_hz: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.integration
async def test_real_server_answers_n_minus_one_frames_with_text(
    moshi_server: RunningServer,
) -> None:
    pcm = tone(N_FRAMES * FRAME_SAMPLES)
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    expected_samples = (N_FRAMES - 1) * FRAME_SAMPLES  # upstream: the first step returns nothing
    samples = 0
    texts: list[str] = []
    other_kinds: list[int] = []

    async def receive(timeout_s: float) -> bytes:
        message = await asyncio.wait_for(ws.recv(), timeout_s)
        assert isinstance(message, bytes), f"unexpected text frame {message!r}"
        return message

    def handle(message: bytes) -> None:
        nonlocal samples
        kind, payload = message[0], message[1:]
        if kind == 0x01:
            samples += int(reader.append_bytes(payload).shape[-1])
        elif kind == 0x02:
            texts.append(payload.decode("utf-8"))
        else:
            other_kinds.append(kind)

    async with websockets.connect(
        moshi_server.url + "/api/chat", max_size=None, open_timeout=HANDSHAKE_TIMEOUT_S
    ) as ws:
        assert await receive(HANDSHAKE_TIMEOUT_S) == b"\x00"

        for i in range(N_FRAMES):
            chunk = writer.append_pcm(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
            if len(chunk) > 0:
                await ws.send(b"\x01" + chunk)
        sent_at = time.monotonic()

        while samples < expected_samples:
            try:
                handle(await receive(STALL_TIMEOUT_S))
            except TimeoutError:
                pytest.fail(
                    f"stalled after {samples / FRAME_SAMPLES:.2f} of {N_FRAMES - 1} frames; "
                    f"server log:\n{moshi_server.log_tail()}"
                )
        elapsed = time.monotonic() - sent_at

        # Drain what follows the last audio frame (its text), and make sure no extra audio comes.
        with_drain = time.monotonic() + DRAIN_S
        while (left := with_drain - time.monotonic()) > 0:
            try:
                handle(await receive(left))
            except TimeoutError:
                break

    frames = samples / FRAME_SAMPLES
    print(
        f"{frames:.0f} frames in {1000 * elapsed:.0f} ms "
        f"({1000 * elapsed / max(frames, 1):.1f} ms/frame), {len(texts)} text messages: "
        f"{''.join(texts)!r}"
    )
    assert samples == expected_samples, f"got {frames} frames, expected {N_FRAMES - 1}"
    assert not other_kinds, f"unexpected message kinds {other_kinds}"
    assert texts, "no 0x02 text message arrived"
    assert moshi_server.backend.alive(), "the server died"

"""Test doubles: a protocol-faithful fake Moshi / PersonaPlex server."""

from tests.fakes.fake_server import (
    FRAME_SIZE,
    GARBAGE_PAYLOAD,
    KNOWN_VOICES,
    SAMPLE_RATE,
    Behaviour,
    FakeServer,
    SessionRecord,
    estimate_frame_index,
    frame_frequency,
    make_output_frame,
)

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

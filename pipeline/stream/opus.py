"""Ogg-Opus streams (RFC 7845) as the Moshi / PersonaPlex servers send and receive them.

`OggOpusEncoder` turns 80 ms model frames (1920 float32 samples at 24 kHz) into Ogg bytes:
two 40 ms Opus packets per frame, each flushed on its own page so that the server's
``sphn.OpusStreamReader`` can decode it at once. `OggOpusDecoder` does the reverse for the
server's stream, whatever the chunking of the bytes.

Pre-skip. RFC 7845 decoders drop the first ``pre_skip`` samples (48 kHz units) of the decoded
audio. sphn writes pre-skip 3840 (80 ms) but its reader, which is what the servers decode our
audio with, ignores the field, and so does `OggOpusDecoder` (to reproduce the server's view of
its own stream: decoded length == encoded length, frame for frame). We write pre-skip **0**
(`DEFAULT_PRE_SKIP`) with granule positions = samples encoded, so that every decoder agrees:
sphn, this module and a standard player such as ffmpeg all produce exactly the encoded length,
with the same alignment. With 3840 a standard decoder would drop 80 ms that the server does
hear. The price is that the codec's own delay (the encoder lookahead, 6.5 ms: 156 samples at
24 kHz, measured in the tests) is not compensated by anyone, which is also what happens to the
servers' input from their web client.

Encoder settings. The defaults copy the servers' own web client (opus-recorder: application
"audio", complexity 0, libopus' automatic bitrate); sphn's writer uses "voip" at libopus'
default complexity, which costs 10-15 times more CPU here (0.4-0.7 ms instead of 40-55 us per
80 ms frame, on speech as on silence) for a modest quality gain.

Both classes call libopus through opuslib: the codec states come from ``opuslib.Encoder`` /
``opuslib.Decoder`` and the per-packet calls go to opuslib's ctypes bindings of
``opus_encode_float`` / ``opus_decode_float`` with preallocated buffers (opuslib's high-level
``decode_float`` builds a Python list of every sample, which doubles the decoding cost).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api
import opuslib.api.decoder
import opuslib.api.encoder
import opuslib.api.info

from pipeline.stream.ogg import OggFormatError, OggPacketReader, OggPageWriter
from pipeline.stream.protocol import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

__all__ = [
    "DEFAULT_ENCODER",
    "DEFAULT_PRE_SKIP",
    "DEFAULT_SERIAL",
    "ENCODER_PRESETS",
    "FRAME_SAMPLES",
    "GRANULE_RATE",
    "PACKET_SAMPLES",
    "SAMPLE_RATE",
    "OggOpusDecoder",
    "OggOpusEncoder",
    "OpusDecodeError",
    "OpusFormatError",
    "OpusHead",
    "OpusTags",
]

PACKET_MS: Final = 40  # two Opus packets per model frame, as sphn's writer does
PACKET_SAMPLES: Final = SAMPLE_RATE * PACKET_MS // 1000  # 960
GRANULE_RATE: Final = 48000  # RFC 7845: granule positions count 48 kHz samples
MAX_PACKET_MS: Final = 120  # longest Opus packet
DEFAULT_PRE_SKIP: Final = 0
DEFAULT_SERIAL: Final = 0x46444250  # "FDBP"; the servers do not care (sphn uses 42)
DEFAULT_VENDOR: Final = "fdb-pipeline"
_OPUS_RATES: Final = (8000, 12000, 16000, 24000, 48000)
_APPLICATIONS: Final = {
    "voip": opuslib.APPLICATION_VOIP,
    "audio": opuslib.APPLICATION_AUDIO,
    "restricted_lowdelay": opuslib.APPLICATION_RESTRICTED_LOWDELAY,
}
_MAX_PACKET_BYTES: Final = 4000  # > 2 x 1275 bytes (two maximal 20 ms frames per packet)

_HEAD_MAGIC: Final = b"OpusHead"
_TAGS_MAGIC: Final = b"OpusTags"
_HEAD: Final = struct.Struct("<8sBBHIhB")  # magic, version, channels, pre-skip, rate, gain, map
_float_p: Final = opuslib.api.c_float_pointer
_encode_float: Final = opuslib.api.encoder.libopus_encode_float
_decode_float: Final = opuslib.api.decoder.libopus_decode_float
_strerror: Final = opuslib.api.info.strerror  # returns bytes (restype c_char_p)


class OpusFormatError(OggFormatError):
    """A valid Ogg stream that is not a (supported) Ogg-Opus stream."""


class OpusDecodeError(OpusFormatError):
    """libopus rejected an audio packet."""


def _opus_error(code: int) -> str:
    message = _strerror(code)
    return f"{message.decode() if isinstance(message, bytes) else 'unknown error'} ({code})"


# --------------------------------------------------------------------------------------------
# Header packets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpusHead:
    """Identification header, the first packet (alone on the BOS page), RFC 7845 section 5.1."""

    channels: int = 1
    pre_skip: int = DEFAULT_PRE_SKIP
    input_sample_rate: int = SAMPLE_RATE
    output_gain: int = 0  # Q7.8 dB
    mapping_family: int = 0
    version: int = 1

    def to_bytes(self) -> bytes:
        if self.mapping_family != 0 or self.channels not in (1, 2):
            raise ValueError("only channel mapping family 0 (mono or stereo) is supported")
        return _HEAD.pack(
            _HEAD_MAGIC,
            self.version,
            self.channels,
            self.pre_skip,
            self.input_sample_rate,
            self.output_gain,
            self.mapping_family,
        )

    @classmethod
    def parse(cls, packet: bytes) -> OpusHead:
        if not packet.startswith(_HEAD_MAGIC):
            raise OpusFormatError(
                f"first packet is not an OpusHead header (starts with {packet[:8]!r}):"
                " not an Ogg-Opus stream"
            )
        if len(packet) < _HEAD.size:
            raise OpusFormatError(f"OpusHead too short: {len(packet)} bytes, need {_HEAD.size}")
        _, version, channels, pre_skip, rate, gain, family = _HEAD.unpack_from(packet)
        if version >> 4:
            raise OpusFormatError(f"unsupported OpusHead version {version} (major version != 0)")
        if channels == 0:
            raise OpusFormatError("OpusHead declares 0 channels")
        if family != 0:
            raise OpusFormatError(
                f"unsupported channel mapping family {family} (only 0, mono/stereo, is supported)"
            )
        if channels > 2:
            raise OpusFormatError(f"mapping family 0 allows 1 or 2 channels, got {channels}")
        return cls(channels, pre_skip, rate, gain, family, version)


@dataclass(frozen=True, slots=True)
class OpusTags:
    """Comment header, the second packet (ending its own page), RFC 7845 section 5.2."""

    vendor: str = DEFAULT_VENDOR
    comments: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        parts = [_TAGS_MAGIC]
        vendor = self.vendor.encode()
        parts += [struct.pack("<I", len(vendor)), vendor, struct.pack("<I", len(self.comments))]
        for comment in self.comments:
            raw = comment.encode()
            parts += [struct.pack("<I", len(raw)), raw]
        return b"".join(parts)

    @classmethod
    def parse(cls, packet: bytes) -> OpusTags:
        if not packet.startswith(_TAGS_MAGIC):
            raise OpusFormatError(
                f"second packet is not an OpusTags header (starts with {packet[:8]!r})"
            )
        pos = len(_TAGS_MAGIC)

        def take(n: int, what: str) -> bytes:
            nonlocal pos
            if pos + n > len(packet):
                raise OpusFormatError(f"OpusTags truncated in the {what}")
            chunk = packet[pos : pos + n]
            pos += n
            return chunk

        def u32(what: str) -> int:
            value: int = struct.unpack("<I", take(4, what))[0]
            return value

        vendor = take(u32("vendor length"), "vendor string")
        comments = []
        for i in range(u32("comment count")):
            comments.append(take(u32(f"length of comment {i}"), f"comment {i}"))
        return cls(
            vendor.decode(errors="replace"),
            tuple(c.decode(errors="replace") for c in comments),
        )


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


DEFAULT_ENCODER: Final = "sphn"  # the server hears what it hears from the reference clients
ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # what the servers' sphn writer and the Full-Duplex-Bench reference clients use
    "sphn": {"application": "voip", "complexity": None},
    # what the servers' own web client uses: far cheaper, for very fast servers
    "webclient": {"application": "audio", "complexity": 0},
}


class OggOpusEncoder:
    """Encode 80 ms mono frames into an Ogg-Opus byte stream, page by page.

    ``encode(frame)`` takes exactly ``frame_size`` (1920 at 24 kHz) float32 samples and returns
    the bytes to send: on the first call the OpusHead page (BOS) and the OpusTags page, then, on
    every call, two pages each holding one 40 ms packet, with granule positions
    ``pre_skip + samples encoded so far`` in 48 kHz units.

    ``application`` is "audio", "voip" or "restricted_lowdelay"; ``complexity`` 0-10 or None for
    libopus' default; ``bitrate`` in bit/s or None for libopus' automatic choice.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        *,
        application: str = "audio",
        complexity: int | None = 0,
        bitrate: int | None = None,
        pre_skip: int = DEFAULT_PRE_SKIP,
        serial: int = DEFAULT_SERIAL,
        vendor: str = DEFAULT_VENDOR,
    ) -> None:
        if sample_rate not in _OPUS_RATES:
            raise ValueError(f"Opus supports sample rates {_OPUS_RATES}, got {sample_rate}")
        if application not in _APPLICATIONS:
            raise ValueError(f"application must be one of {sorted(_APPLICATIONS)}")
        if complexity is not None and not 0 <= complexity <= 10:
            raise ValueError(f"complexity must be in 0..10, got {complexity}")
        if not 0 <= pre_skip <= 0xFFFF:
            raise ValueError(f"pre_skip must fit in 16 bits, got {pre_skip}")
        self.sample_rate: Final = sample_rate
        self.frame_size: Final = sample_rate * FRAME_MS // 1000
        self.packet_size: Final = sample_rate * PACKET_MS // 1000
        self.pre_skip: Final = pre_skip
        self._granule_step: Final = self.packet_size * (GRANULE_RATE // sample_rate)
        self._opus = opuslib.Encoder(sample_rate, 1, _APPLICATIONS[application])
        if complexity is not None:
            self._opus.complexity = complexity
        if bitrate is not None:
            self._opus.bitrate = bitrate
        self._state = self._opus.encoder_state
        self._out = ctypes.create_string_buffer(_MAX_PACKET_BYTES)
        self._pages = OggPageWriter(serial)
        self.head: Final = OpusHead(1, pre_skip, sample_rate)
        self.tags: Final = OpusTags(vendor)
        self._headers: bytes | None = None
        self._granule = pre_skip
        self.frames_encoded = 0
        self._finished = False

    @property
    def granule(self) -> int:
        """Granule position of the last page written (48 kHz units, includes pre-skip)."""
        return self._granule

    @property
    def lookahead(self) -> int:
        """The encoder's algorithmic delay in samples at ``sample_rate`` (from libopus)."""
        return int(self._opus.lookahead)

    def _header_pages(self) -> bytes:
        # RFC 7845: OpusHead alone on the BOS page, OpusTags finishing its own page.
        head = self._pages.write_packet(self.head.to_bytes(), 0, flush=True)
        return head + self._pages.write_packet(self.tags.to_bytes(), 0, flush=True)

    def encode(self, pcm: npt.NDArray[np.float32]) -> bytes:
        """Encode one frame; return the Ogg bytes (headers first on the first call)."""
        if not isinstance(pcm, np.ndarray):
            raise ValueError(f"expected a numpy float32 array, got {type(pcm).__name__}")
        if pcm.dtype != np.float32:
            raise ValueError(f"expected float32 samples, got dtype {pcm.dtype}")
        if pcm.shape != (self.frame_size,):
            raise ValueError(
                f"expected one mono frame of {self.frame_size} samples"
                f" ({FRAME_MS} ms at {self.sample_rate} Hz), got shape {pcm.shape}"
            )
        if self._finished:
            raise ValueError("the stream is finished (finish() was called)")
        if not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm)
        parts = []
        if self._headers is None:
            self._headers = self._header_pages()
            parts.append(self._headers)
        address = pcm.ctypes.data
        step = self.packet_size * 4
        for k in range(self.frame_size // self.packet_size):
            size = _encode_float(
                self._state,
                ctypes.cast(address + k * step, _float_p),
                self.packet_size,
                self._out,
                _MAX_PACKET_BYTES,
            )
            if size < 0:
                raise RuntimeError(f"libopus failed to encode: {_opus_error(size)}")
            self._granule += self._granule_step
            packet = ctypes.string_at(self._out, size)
            parts.append(self._pages.write_packet(packet, self._granule, flush=True))
        self.frames_encoded += 1
        return b"".join(parts)

    def finish(self) -> bytes:
        """End the stream: an empty EOS page (plus the headers if nothing was encoded yet).

        Idempotent: later calls return ``b""``. `encode` raises after it.
        """
        if self._finished:
            return b""
        self._finished = True
        parts = []
        if self._headers is None:
            self._headers = self._header_pages()
            parts.append(self._headers)
        parts.append(self._pages.flush(eos=True))
        return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class OggOpusDecoder:
    """Decode an Ogg-Opus byte stream fed in arbitrary chunks into mono float32 samples.

    ``feed(data)`` returns the samples of every audio packet completed by ``data`` (an empty
    array if none). The first packet must be a valid OpusHead (version 0.x, mapping family 0,
    1 or 2 channels; stereo is downmixed by libopus), the second an OpusTags; every following
    packet is decoded. Pre-skip and end trimming are ignored exactly as sphn's stream reader
    does, so N packets of 40 ms give N x 40 ms of samples. Errors raise `OggFormatError`
    (`OpusFormatError` / `OpusDecodeError` for the Opus layer).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate not in _OPUS_RATES:
            raise ValueError(f"Opus supports sample rates {_OPUS_RATES}, got {sample_rate}")
        self.sample_rate: Final = sample_rate
        self._max_frame: Final = sample_rate * MAX_PACKET_MS // 1000
        self._reader = OggPacketReader()
        self._opus = opuslib.Decoder(sample_rate, 1)
        self._state = self._opus.decoder_state
        self.head: OpusHead | None = None
        self.tags: OpusTags | None = None
        self.packets_decoded = 0
        self.samples_decoded = 0
        self._error: OggFormatError | None = None

    @property
    def granule(self) -> int:
        """Granule position of the last page that completed a packet (-1 before any)."""
        return self._reader.granule

    @property
    def eos(self) -> bool:
        return self._reader.eos

    def feed(self, data: bytes | bytearray | memoryview) -> npt.NDArray[np.float32]:
        """Samples of every audio packet completed by ``data``; after an error, re-raise it."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except OggFormatError as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes | bytearray | memoryview) -> npt.NDArray[np.float32]:
        packets = self._reader.feed(data)
        if self.tags is None:
            while packets and self.tags is None:
                packet = packets.pop(0)
                if self.head is None:
                    self.head = OpusHead.parse(packet)
                else:
                    self.tags = OpusTags.parse(packet)
        if not packets:
            return np.zeros(0, dtype=np.float32)
        max_frame = self._max_frame
        out = np.empty(len(packets) * max_frame, dtype=np.float32)
        address = out.ctypes.data
        total = 0
        for packet in packets:
            if not packet:
                raise OpusDecodeError(
                    f"empty audio packet after packet {self.packets_decoded} (not valid Opus)"
                )
            n = _decode_float(
                self._state,
                packet,
                len(packet),
                ctypes.cast(address + total * 4, _float_p),
                max_frame,
                0,
            )
            if n < 0:
                raise OpusDecodeError(
                    f"libopus cannot decode audio packet {self.packets_decoded}"
                    f" ({len(packet)} bytes): {_opus_error(n)}"
                )
            total += n
            self.packets_decoded += 1
        self.samples_decoded += total
        return out[:total].copy()

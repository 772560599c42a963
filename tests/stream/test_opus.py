"""Ogg-Opus encoder/decoder, checked against the independent implementation sphn (0.2.x).

sphn is what both servers use to decode our audio (``OpusStreamReader``) and to encode theirs
(``OpusStreamWriter``), so frame-for-frame agreement with it is the interoperability contract.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import numpy.typing as npt
import opuslib
import opuslib.api.decoder
import pytest

from pipeline.stream.ogg import (
    FLAG_BOS,
    FLAG_EOS,
    OggFormatError,
    OggPageWriter,
    parse_pages,
)
from pipeline.stream.opus import (
    DEFAULT_PRE_SKIP,
    FRAME_SAMPLES,
    OggOpusDecoder,
    OggOpusEncoder,
    OpusDecodeError,
    OpusFormatError,
    OpusHead,
    OpusTags,
)

sphn = pytest.importorskip("sphn")

SR = 24000
Signal = npt.NDArray[np.float32]


def speech_like(n_frames: int, seed: int = 0) -> Signal:
    """Voiced-speech caricature: gliding pitch, 24 harmonics, syllable-rate envelope, breath."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames * FRAME_SAMPLES) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.9 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum((0.25 / k) * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 25))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 3.3 * t)) ** 2
    breath = 0.01 * rng.standard_normal(t.size)
    return np.asarray(voice * envelope + breath, dtype=np.float32)


def tone(n_frames: int, freq: float = 440.0) -> Signal:
    t = np.arange(n_frames * FRAME_SAMPLES) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames(signal: Signal) -> list[Signal]:
    return [signal[i : i + FRAME_SAMPLES] for i in range(0, signal.size, FRAME_SAMPLES)]


def measure_delay(decoded: Signal, original: Signal, max_lag: int = 960) -> int:
    """Lag (samples) maximising the cross-correlation of decoded against original."""
    n = 2 * original.size
    spectrum = np.fft.rfft(decoded, n) * np.conj(np.fft.rfft(original, n))
    return int(np.argmax(np.fft.irfft(spectrum, n)[:max_lag]))


def aligned_quality(decoded: Signal, original: Signal, delay: int) -> tuple[float, float]:
    """(SNR in dB, Pearson correlation) after removing ``delay`` samples of codec delay."""
    y = decoded[delay:].astype(np.float64)
    x = original[: y.size].astype(np.float64)
    snr = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    return float(snr), float(np.corrcoef(x, y)[0, 1])


def sphn_stream(signal: Signal) -> list[bytes]:
    writer = sphn.OpusStreamWriter(SR)
    return [bytes(writer.append_pcm(frame)) for frame in frames(signal)]


# ---------------------------------------------------------------------------------------------
# (a) our encoder -> sphn's reader (what the server does with our audio)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [{}, {"application": "voip", "complexity": None}, {"application": "restricted_lowdelay"}],
    ids=["default", "voip", "lowdelay"],
)
def test_sphn_reader_decodes_our_stream_frame_for_frame(config: dict[str, object]) -> None:
    signal = speech_like(40, seed=1)
    encoder = OggOpusEncoder(SR, **config)  # type: ignore[arg-type]
    reader = sphn.OpusStreamReader(SR)
    decoded = []
    for i, frame in enumerate(frames(signal)):
        out = reader.append_bytes(encoder.encode(frame))
        assert out.dtype == np.float32
        assert out.shape == (FRAME_SAMPLES,), f"frame {i}"
        decoded.append(out)
    assert len(decoded) == 40


def test_sphn_reader_output_resembles_input_speech() -> None:
    signal = speech_like(50, seed=2)
    encoder = OggOpusEncoder(SR)
    reader = sphn.OpusStreamReader(SR)
    decoded = np.concatenate([reader.append_bytes(encoder.encode(f)) for f in frames(signal)])
    assert decoded.size == signal.size  # pre-skip ignored: decoded length == encoded length
    delay = measure_delay(decoded, signal)
    # the only delay is the encoder's lookahead (6.5 ms = 156 samples at 24 kHz)
    assert abs(delay - encoder.lookahead) <= 2, (delay, encoder.lookahead)
    snr, corr = aligned_quality(decoded, signal, delay)
    assert snr > 12.0, snr
    assert corr > 0.97, corr
    # without compensating the delay the match is much worse: the measurement is meaningful
    assert aligned_quality(decoded, signal, 0)[1] < corr - 0.1


def test_sphn_reader_output_resembles_input_tone() -> None:
    signal = tone(30)
    encoder = OggOpusEncoder(SR)
    reader = sphn.OpusStreamReader(SR)
    decoded = np.concatenate([reader.append_bytes(encoder.encode(f)) for f in frames(signal)])
    # a pure tone is periodic, so take the delay measured on broadband signals: the lookahead
    snr, corr = aligned_quality(decoded[FRAME_SAMPLES:], signal[FRAME_SAMPLES:], encoder.lookahead)
    assert snr > 15.0, snr
    assert corr > 0.98, corr
    # and the spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(decoded[FRAME_SAMPLES:]))
    peak_hz = np.argmax(spectrum) * SR / (decoded.size - FRAME_SAMPLES)
    assert abs(peak_hz - 440.0) < 2.0


def test_our_decoder_matches_sphn_reader_on_our_stream() -> None:
    signal = speech_like(30, seed=3)
    encoder = OggOpusEncoder(SR)
    reader = sphn.OpusStreamReader(SR)
    decoder = OggOpusDecoder(SR)
    for frame in frames(signal):
        data = encoder.encode(frame)
        theirs = reader.append_bytes(data)
        ours = decoder.feed(data)
        assert ours.shape == theirs.shape == (FRAME_SAMPLES,)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    assert decoder.samples_decoded == signal.size


# ---------------------------------------------------------------------------------------------
# (b) sphn's writer -> our decoder (what we do with the server's audio)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_signal", [lambda: speech_like(40, seed=4), lambda: tone(40)])
def test_our_decoder_decodes_sphn_stream_frame_for_frame(make_signal: object) -> None:
    signal = make_signal()  # type: ignore[operator]
    reader = sphn.OpusStreamReader(SR)
    decoder = OggOpusDecoder(SR)
    for i, chunk in enumerate(sphn_stream(signal)):
        ours = decoder.feed(chunk)
        theirs = reader.append_bytes(chunk)
        assert ours.dtype == np.float32
        assert ours.shape == (FRAME_SAMPLES,), f"frame {i}"
        # same libopus algorithm on both sides: (nearly) identical samples
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    assert decoder.packets_decoded == 80
    assert decoder.samples_decoded == signal.size


def test_sphn_stream_with_silence_and_loud_frames() -> None:
    rng = np.random.default_rng(5)
    signal = np.concatenate(
        [np.zeros(5 * FRAME_SAMPLES), 0.9 * rng.uniform(-1, 1, 5 * FRAME_SAMPLES)]
    ).astype(np.float32)
    decoder = OggOpusDecoder(SR)
    outs = [decoder.feed(chunk) for chunk in sphn_stream(signal)]
    assert [o.size for o in outs] == [FRAME_SAMPLES] * 10


# ---------------------------------------------------------------------------------------------
# (c) header pages and granule positions (RFC 7845)
# ---------------------------------------------------------------------------------------------


def test_our_header_pages_follow_rfc7845() -> None:
    encoder = OggOpusEncoder(SR)
    first = encoder.encode(tone(1))
    pages = parse_pages(first)
    assert len(pages) == 4  # OpusHead, OpusTags, two audio pages
    head, tags, audio1, audio2 = pages
    assert len({p.serial for p in pages}) == 1
    assert [p.sequence for p in pages] == [0, 1, 2, 3]

    # ID header: alone on the BOS page, granule 0, exactly 19 bytes for mapping family 0
    assert head.flags == FLAG_BOS
    assert head.granule == 0
    assert head.lacing == bytes([19])
    magic, version, channels, pre_skip, rate, gain, family = struct.unpack("<8sBBHIhB", head.body)
    assert magic == b"OpusHead"
    assert version == 1
    assert channels == 1
    assert pre_skip == DEFAULT_PRE_SKIP == 0
    assert rate == SR
    assert gain == 0
    assert family == 0

    # comment header: its own page, granule 0, vendor string and zero comments
    assert tags.flags == 0
    assert tags.granule == 0
    assert tags.complete_packets == 1
    assert tags.body[:8] == b"OpusTags"
    (vendor_len,) = struct.unpack_from("<I", tags.body, 8)
    vendor = tags.body[12 : 12 + vendor_len]
    assert vendor == b"fdb-pipeline"
    assert struct.unpack_from("<I", tags.body, 12 + vendor_len) == (0,)
    assert len(tags.body) == 16 + vendor_len
    assert OpusTags.parse(tags.body) == OpusTags("fdb-pipeline", ())

    # audio: one 40 ms packet per page, granule = pre-skip + samples so far, in 48 kHz units
    decoder = opuslib.Decoder(SR, 1)
    for k, page in enumerate((audio1, audio2), start=1):
        assert page.flags == 0
        assert page.complete_packets == 1
        assert page.lacing[-1] < 255
        assert page.granule == DEFAULT_PRE_SKIP + k * 1920
        samples = opuslib.api.decoder.get_nb_samples(
            decoder.decoder_state, page.body, len(page.body)
        )
        assert samples == 960


def test_granules_continue_across_frames_and_eos() -> None:
    encoder = OggOpusEncoder(SR)
    data = b"".join(encoder.encode(f) for f in frames(speech_like(5, seed=6)))
    data += encoder.finish()
    pages = parse_pages(data)
    audio = pages[2:-1]
    assert [p.granule for p in audio] == [1920 * k for k in range(1, 11)]
    assert encoder.granule == 19200
    eos = pages[-1]
    assert eos.flags == FLAG_EOS
    assert eos.lacing == b""
    assert eos.granule == 19200
    assert [p.sequence for p in pages] == list(range(len(pages)))


def test_pre_skip_option_offsets_granules() -> None:
    encoder = OggOpusEncoder(SR, pre_skip=312)
    pages = parse_pages(encoder.encode(tone(1)) + encoder.encode(tone(1)))
    assert OpusHead.parse(pages[0].body).pre_skip == 312
    assert [p.granule for p in pages[2:]] == [312 + 1920 * k for k in range(1, 5)]
    # joining a stream midway (no BOS page) is an error, not silently skipped audio
    with pytest.raises(OggFormatError, match="BOS"):
        OggOpusDecoder(SR).feed(encoder.encode(tone(1)))
    # decoders ignore pre-skip, exactly like sphn: still 1920 samples per frame
    fresh = OggOpusEncoder(SR, pre_skip=312)
    reader = sphn.OpusStreamReader(SR)
    ours = OggOpusDecoder(SR)
    for frame in frames(tone(3)):
        data = fresh.encode(frame)
        assert reader.append_bytes(data).size == FRAME_SAMPLES
        assert ours.feed(data).size == FRAME_SAMPLES


def test_sphn_stream_layout_as_observed() -> None:
    """Documents what sphn 0.2.1's writer sends (see protocol.md)."""
    chunks = sphn_stream(tone(3))
    first = parse_pages(chunks[0])
    assert len(first) == 4  # OpusHead, OpusTags, and one page per 40 ms packet
    head = OpusHead.parse(first[0].body)
    assert head == OpusHead(
        channels=1, pre_skip=3840, input_sample_rate=48000, output_gain=0, mapping_family=0
    )
    assert first[0].flags == FLAG_BOS
    assert first[0].serial == 42
    assert OpusTags.parse(first[1].body).vendor == "KyutaiMoshi"
    audio = [p for chunk in chunks for p in parse_pages(chunk)][2:]
    assert [p.complete_packets for p in audio] == [1] * 6
    # granules count encoded samples at 48 kHz WITHOUT adding the declared pre-skip (3840):
    # by RFC 7845 the first 80 ms would be trimmed by a standard player
    assert [p.granule for p in audio] == [1920 * k for k in range(1, 7)]
    assert not any(p.eos for p in audio)


def test_decoder_exposes_headers() -> None:
    decoder = OggOpusDecoder(SR)
    assert decoder.feed(sphn_stream(tone(1))[0]).size == FRAME_SAMPLES
    assert decoder.head is not None and decoder.head.pre_skip == 3840
    assert decoder.tags is not None and decoder.tags.vendor == "KyutaiMoshi"
    assert decoder.granule == 3840


# ---------------------------------------------------------------------------------------------
# (d) arbitrary chunking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_our_decoder_random_chunks_of_sphn_stream(seed: int) -> None:
    signal = speech_like(20, seed=10 + seed)
    data = b"".join(sphn_stream(signal))
    reference = OggOpusDecoder(SR)
    expected = np.concatenate([reference.feed(c) for c in sphn_stream(signal)])
    rng = random.Random(seed)
    decoder = OggOpusDecoder(SR)
    parts = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 1, 3, 17, 27, 64, 150, 400, 1000])
        out = decoder.feed(data[pos : pos + step])
        assert out.dtype == np.float32
        parts.append(out)
        pos += step
    got = np.concatenate(parts)
    assert got.size == signal.size == expected.size
    np.testing.assert_array_equal(got, expected)


def test_our_decoder_one_byte_at_a_time_and_all_at_once() -> None:
    signal = speech_like(4, seed=20)
    encoder = OggOpusEncoder(SR)
    data = b"".join(encoder.encode(f) for f in frames(signal))
    whole = OggOpusDecoder(SR).feed(data)
    decoder = OggOpusDecoder(SR)
    bytewise = np.concatenate([decoder.feed(data[i : i + 1]) for i in range(len(data))])
    assert whole.size == bytewise.size == signal.size
    np.testing.assert_array_equal(whole, bytewise)


# ---------------------------------------------------------------------------------------------
# Encoder API
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(960, np.float32), "1920"),
        (np.zeros(1921, np.float32), "1920"),
        (np.zeros((1, 1920), np.float32), "1920"),
        (np.zeros(1920, np.float64), "float32"),
        (np.zeros(1920, np.int16), "float32"),
        ([0.0] * 1920, "numpy"),
    ],
)
def test_encode_rejects_bad_frames(bad: object, message: str) -> None:
    encoder = OggOpusEncoder(SR)
    with pytest.raises(ValueError, match=message):
        encoder.encode(bad)  # type: ignore[arg-type]


def test_encode_accepts_non_contiguous_frame() -> None:
    wide = np.repeat(tone(1), 2)
    encoder = OggOpusEncoder(SR)
    decoder = OggOpusDecoder(SR)
    assert decoder.feed(encoder.encode(wide[::2])).size == FRAME_SAMPLES


def test_finish() -> None:
    encoder = OggOpusEncoder(SR)
    reader = sphn.OpusStreamReader(SR)
    decoder = OggOpusDecoder(SR)
    for frame in frames(tone(2)):
        data = encoder.encode(frame)
        reader.append_bytes(data)
        decoder.feed(data)
    end = encoder.finish()
    assert reader.append_bytes(end).size == 0  # sphn accepts the empty EOS page
    assert decoder.feed(end).size == 0
    assert decoder.eos
    assert encoder.finish() == b""
    with pytest.raises(ValueError, match="finished"):
        encoder.encode(tone(1))


def test_finish_without_audio_still_valid() -> None:
    data = OggOpusEncoder(SR).finish()
    pages = parse_pages(data)
    assert [p.flags for p in pages] == [FLAG_BOS, 0, FLAG_EOS]
    decoder = OggOpusDecoder(SR)
    assert decoder.feed(data).size == 0
    assert decoder.head is not None and decoder.tags is not None


def test_decoded_length_equals_encoded_length_long_run() -> None:
    rng = np.random.default_rng(8)
    encoder = OggOpusEncoder(SR)
    decoder = OggOpusDecoder(SR)
    total = 0
    for i in range(100):
        frame = (rng.standard_normal(FRAME_SAMPLES) * (0.0 if i % 7 == 0 else 0.1)).astype(
            np.float32
        )
        total += decoder.feed(encoder.encode(frame)).size
    assert total == 100 * FRAME_SAMPLES == decoder.samples_decoded
    assert encoder.frames_encoded == 100


def test_other_sample_rates() -> None:
    encoder = OggOpusEncoder(48000)
    assert encoder.frame_size == 3840
    data = encoder.encode(np.zeros(3840, np.float32))
    assert OggOpusDecoder(48000).feed(data).size == 3840
    assert OggOpusDecoder(24000).feed(data).size == 1920
    assert parse_pages(data)[-1].granule == 3840  # still 48 kHz units
    with pytest.raises(ValueError, match="sample rates"):
        OggOpusEncoder(44100)
    with pytest.raises(ValueError, match="sample rates"):
        OggOpusDecoder(44100)


# ---------------------------------------------------------------------------------------------
# Decoder errors
# ---------------------------------------------------------------------------------------------


def _ogg(*packets: bytes) -> bytes:
    writer = OggPageWriter(77)
    return b"".join(writer.write_packet(p, 0, flush=True) for p in packets)


def _head(**fields: int) -> bytes:
    values = {
        "version": 1,
        "channels": 1,
        "pre_skip": 0,
        "rate": 24000,
        "gain": 0,
        "family": 0,
    } | fields
    return struct.pack("<8sBBHIhB", b"OpusHead", *values.values())


TAGS = OpusTags("test").to_bytes()


def test_decoder_rejects_garbage() -> None:
    decoder = OggOpusDecoder(SR)
    with pytest.raises(OggFormatError, match="capture pattern"):
        decoder.feed(b"\x01\x02\x03 definitely not ogg")
    with pytest.raises(OggFormatError):  # stays failed
        decoder.feed(sphn_stream(tone(1))[0])


def test_decoder_rejects_corrupted_sphn_page() -> None:
    data = bytearray(b"".join(sphn_stream(tone(2))))
    data[150] ^= 0x01  # inside the first audio page
    with pytest.raises(OggFormatError, match="CRC"):
        OggOpusDecoder(SR).feed(bytes(data))


@pytest.mark.parametrize(
    ("stream", "error", "message"),
    [
        (_ogg(b"\x01vorbis" + bytes(23)), OpusFormatError, "not an Ogg-Opus"),
        (_ogg(b"OpusHead\x01"), OpusFormatError, "too short"),
        (_ogg(_head(version=0x10), TAGS), OpusFormatError, "version"),
        (_ogg(_head(channels=0), TAGS), OpusFormatError, "0 channels"),
        (_ogg(_head(channels=3), TAGS), OpusFormatError, "1 or 2 channels"),
        (_ogg(_head(family=1), TAGS), OpusFormatError, "mapping family"),
        (_ogg(_head(), b"\xfc\xff\xfe"), OpusFormatError, "OpusTags"),
        (_ogg(_head(), b"OpusTags\xff\x00\x00\x00"), OpusFormatError, "truncated"),
        (_ogg(_head(), TAGS, b"\x03\x00"), OpusDecodeError, "cannot decode"),
        (_ogg(_head(), TAGS, b""), OpusDecodeError, "empty audio packet"),
    ],
    ids=[
        "vorbis",
        "short-head",
        "version",
        "channels0",
        "channels3",
        "family",
        "no-tags",
        "bad-tags",
        "bad-packet",
        "empty-packet",
    ],
)
def test_decoder_rejects_non_opus(stream: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        OggOpusDecoder(SR).feed(stream)
    assert isinstance(raised.value, OggFormatError)  # what the session catches


def test_decoder_accepts_minor_version_and_stereo_downmix() -> None:
    stereo = opuslib.Encoder(SR, 2, "audio")
    packet = stereo.encode_float(np.zeros(2 * 960, np.float32).tobytes(), 960)
    data = _ogg(_head(version=15, channels=2), TAGS, packet, packet)
    decoder = OggOpusDecoder(SR)
    out = decoder.feed(data)
    assert out.size == 1920  # mono output
    assert decoder.head is not None and decoder.head.channels == 2


def test_decoder_stays_failed_after_opus_error() -> None:
    decoder = OggOpusDecoder(SR)
    with pytest.raises(OpusFormatError):
        decoder.feed(_ogg(b"\x01vorbis" + bytes(23)))
    with pytest.raises(OpusFormatError):
        decoder.feed(b"")


def test_encoder_options() -> None:
    signal = speech_like(10, seed=30)
    sizes = {}
    for bitrate in (12000, 64000):
        encoder = OggOpusEncoder(SR, bitrate=bitrate, serial=7, vendor="x")
        data = b"".join(encoder.encode(f) for f in frames(signal))
        pages = parse_pages(data)
        assert {p.serial for p in pages} == {7}
        assert OpusTags.parse(pages[1].body).vendor == "x"
        sizes[bitrate] = sum(len(p.body) for p in pages[2:])
    # 10 frames = 0.8 s: about bitrate * 0.8 / 8 bytes
    assert 600 < sizes[12000] < 2000
    assert 4000 < sizes[64000] < 9000
    with pytest.raises(ValueError, match="complexity"):
        OggOpusEncoder(SR, complexity=11)
    with pytest.raises(ValueError, match="application"):
        OggOpusEncoder(SR, application="music")
    with pytest.raises(ValueError, match="pre_skip"):
        OggOpusEncoder(SR, pre_skip=70000)

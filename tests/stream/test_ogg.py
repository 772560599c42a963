"""Ogg page layer: CRC, page writer, incremental packet reader."""

from __future__ import annotations

import random
import struct

import pytest

from pipeline.stream.ogg import (
    FLAG_BOS,
    FLAG_CONTINUED,
    FLAG_EOS,
    OggFormatError,
    OggPacketReader,
    OggPageReader,
    OggPageWriter,
    crc32,
    crc32_table,
    make_page,
    parse_pages,
)

# The first two pages of sphn 0.2.1's OpusStreamWriter(24000) (written by the Rust `ogg` crate,
# an independent implementation): OpusHead on the BOS page and OpusTags, serial 42.
SPHN_HEAD_PAGE = bytes.fromhex(
    "4f676753000200000000000000002a00000000000000aefef3f101134f707573486561640101000f80bb0000000000"
)
SPHN_TAGS_PAGE = bytes.fromhex(
    "4f676753000000000000000000002a000000010000004b3c0171011b4f707573546167730b0000004b79757461"
    "694d6f73686900000000"
)


def _packets(seed: int, count: int, max_size: int = 1200) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 254, 255, 256, 510, 765, 1000]  # lacing edge cases: multiples of 255
    sizes += [rng.randrange(max_size) for _ in range(count - len(sizes))]
    return [rng.randbytes(n) for n in sizes]


def _stream(packets: list[bytes], **writer_kw: int) -> bytes:
    writer = OggPageWriter(0x1234, **writer_kw)
    out = [writer.write_packet(p, 960 * (i + 1), flush=i % 3 == 0) for i, p in enumerate(packets)]
    out.append(writer.flush(eos=True))
    return b"".join(out)


def _with_crc(page: bytearray) -> bytes:
    struct.pack_into("<I", page, 22, 0)
    struct.pack_into("<I", page, 22, crc32(page))
    return bytes(page)


# ---------------------------------------------------------------------------------------------
# CRC
# ---------------------------------------------------------------------------------------------


def test_crc_known_vector() -> None:
    # CRC-32 with polynomial 0x04C11DB7, MSB first, init 0, no final XOR: "check" value of the
    # catalogued CRC-32/CKSUM (0x765E7680) without its final inversion.
    assert crc32(b"123456789") == 0x89A1897F
    assert crc32_table(b"123456789") == 0x89A1897F
    assert crc32(b"") == crc32_table(b"") == 0
    assert crc32(b"\x00\x00\x00\x00") == 0  # init 0: leading zeros do not change the CRC


def test_crc_fast_path_matches_table_driven() -> None:
    rng = random.Random(7)
    for size in [1, 2, 3, 27, 255, 256, 1000, 4096]:
        data = rng.randbytes(size)
        assert crc32(data) == crc32_table(data)
        cut = rng.randrange(size + 1)
        assert crc32(data[cut:], crc32(data[:cut])) == crc32(data)
        assert crc32_table(data[cut:], crc32_table(data[:cut])) == crc32(data)
        assert crc32(memoryview(data)) == crc32(bytearray(data)) == crc32(data)


def test_crc_of_independent_writers_pages() -> None:
    for page in (SPHN_HEAD_PAGE, SPHN_TAGS_PAGE):
        stored = struct.unpack_from("<I", page, 22)[0]
        zeroed = page[:22] + bytes(4) + page[26:]
        assert crc32(zeroed) == stored
        assert crc32_table(zeroed) == stored


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def test_make_page_reproduces_independent_writer_byte_for_byte() -> None:
    head = SPHN_HEAD_PAGE[28:]
    tags = SPHN_TAGS_PAGE[28:]
    assert (
        make_page(head, bytes([len(head)]), serial=42, sequence=0, granule=0, flags=FLAG_BOS)
        == SPHN_HEAD_PAGE
    )
    writer = OggPageWriter(42)
    assert writer.write_packet(head, 0, flush=True) == SPHN_HEAD_PAGE
    assert writer.write_packet(tags, 0, flush=True) == SPHN_TAGS_PAGE


def test_page_round_trip() -> None:
    body = bytes(range(256)) * 3  # 768 bytes = 255 + 255 + 255 + 3
    lacing = bytes([255, 255, 255, 3])
    page = make_page(
        body, lacing, serial=0xDEADBEEF, sequence=77, granule=123456789, flags=FLAG_EOS
    )
    assert page[:4] == b"OggS"
    assert len(page) == 27 + len(lacing) + len(body)
    (parsed,) = parse_pages(page)
    assert parsed.flags == FLAG_EOS
    assert parsed.eos and not parsed.bos and not parsed.continued
    assert parsed.granule == 123456789
    assert parsed.serial == 0xDEADBEEF
    assert parsed.sequence == 77
    assert parsed.lacing == lacing
    assert parsed.body == body
    assert parsed.complete_packets == 1


def test_make_page_validates() -> None:
    with pytest.raises(ValueError, match="sum"):
        make_page(b"abc", b"\x02", serial=1, sequence=0, granule=0)
    with pytest.raises(ValueError, match="segments"):
        make_page(b"", bytes(256), serial=1, sequence=0, granule=0)
    with pytest.raises(ValueError, match="flags"):
        make_page(b"", b"", serial=1, sequence=0, granule=0, flags=0x08)


def test_writer_flags_sequence_and_granules() -> None:
    writer = OggPageWriter(5)
    assert writer.write_packet(b"a" * 10, 100) == b""  # no flush: stays pending
    first = writer.write_packet(b"b" * 20, 200, flush=True)
    second = writer.write_packet(b"c" * 30, 300, flush=True)
    last = writer.flush(eos=True)
    pages = parse_pages(first + second + last)
    assert [p.flags for p in pages] == [FLAG_BOS, 0, FLAG_EOS]
    assert [p.sequence for p in pages] == [0, 1, 2]
    assert {p.serial for p in pages} == {5}
    assert [p.lacing for p in pages] == [bytes([10, 20]), bytes([30]), b""]
    # granule of the last packet ending on the page; the empty EOS page repeats the last one
    assert [p.granule for p in pages] == [200, 300, 300]
    assert writer.eos_written
    with pytest.raises(ValueError, match="ended"):
        writer.write_packet(b"x", 400)


def test_packet_spanning_pages_flags_and_granule() -> None:
    # a packet longer than one page can hold (255 x 255 bytes)
    big = random.Random(3).randbytes(255 * 255 + 1000)
    writer = OggPageWriter(9)
    data = writer.write_packet(big, 4242, flush=True)
    pages = parse_pages(data)
    assert len(pages) == 2
    assert pages[0].flags == FLAG_BOS
    assert pages[0].lacing == b"\xff" * 255
    assert pages[0].granule == -1  # no packet ends on the first page
    assert pages[1].flags == FLAG_CONTINUED
    assert pages[1].granule == 4242
    assert pages[1].complete_packets == 1
    assert OggPacketReader().feed(data) == [big]


def test_small_pages_many_spans() -> None:
    packets = _packets(seed=11, count=60)
    data = _stream(packets, max_segments=3)
    pages = parse_pages(data)
    assert any(p.continued for p in pages)
    assert all(len(p.lacing) <= 3 for p in pages)
    assert [p.sequence for p in pages] == list(range(len(pages)))
    assert OggPacketReader().feed(data) == packets


def test_exact_multiple_of_255_at_page_end() -> None:
    # 510 bytes with 2 segments per page: the terminating 0 lacing value lands on the next page
    writer = OggPageWriter(1, max_segments=2)
    data = writer.write_packet(b"z" * 510, 7, flush=True)
    pages = parse_pages(data)
    assert [p.lacing for p in pages] == [b"\xff\xff", b"\x00"]
    assert [p.granule for p in pages] == [-1, 7]
    assert pages[1].continued
    assert OggPacketReader().feed(data) == [b"z" * 510]


# ---------------------------------------------------------------------------------------------
# Reader: chunking
# ---------------------------------------------------------------------------------------------


def test_reader_whole_stream_in_one_chunk() -> None:
    packets = _packets(seed=1, count=40)
    reader = OggPacketReader()
    assert reader.feed(_stream(packets)) == packets
    assert reader.eos
    assert reader.buffered == 0
    assert reader.packets_read == len(packets)


@pytest.mark.parametrize("seed", range(5))
def test_reader_random_chunk_splits(seed: int) -> None:
    packets = _packets(seed=100 + seed, count=50)
    data = _stream(packets, max_segments=4 if seed % 2 else 255)
    rng = random.Random(seed)
    reader = OggPacketReader()
    got: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 5, 27, 28, 100, 700, 5000])
        got += reader.feed(data[pos : pos + step])
        pos += step
    assert got == packets
    assert reader.buffered == 0


def test_reader_one_byte_at_a_time() -> None:
    packets = _packets(seed=2, count=20, max_size=600)
    data = _stream(packets, max_segments=2)
    reader = OggPacketReader()
    got: list[bytes] = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == packets


def test_reader_incomplete_page_waits() -> None:
    data = _stream([b"hello", b"world"])
    reader = OggPacketReader()
    assert reader.feed(data[:10]) == []
    assert reader.feed(data[10:30]) == []
    assert reader.buffered == 30
    assert reader.feed(data[30:]) == [b"hello", b"world"]
    assert reader.feed(b"") == []


def test_page_reader_gives_pages() -> None:
    data = _stream([b"abc", b"defg"])
    pages = OggPageReader().feed(memoryview(data))
    assert [p.body for p in pages] == [b"abc", b"defg"]
    assert [p.eos for p in pages] == [False, True]


# ---------------------------------------------------------------------------------------------
# Reader: errors
# ---------------------------------------------------------------------------------------------


def test_a_reader_error_is_caught_as_a_value_error() -> None:
    # callers that know nothing of Ogg catch ValueError, as they would from sphn's reader
    with pytest.raises(ValueError, match="capture pattern"):
        OggPageReader().feed(memoryview(b"not an ogg stream at all, but long enough"))


@pytest.mark.parametrize("garbage", [b"hello world, this is not an ogg stream", b"\x00" * 64, b"O"])
def test_garbage_raises(garbage: bytes) -> None:
    reader = OggPacketReader()
    if garbage == b"O":  # a prefix of "OggS" is not (yet) an error
        assert reader.feed(garbage) == []
        with pytest.raises(OggFormatError, match="capture pattern"):
            reader.feed(b"ops")
        return
    with pytest.raises(OggFormatError, match="capture pattern"):
        reader.feed(garbage)


def test_garbage_detected_on_first_byte() -> None:
    reader = OggPacketReader()
    with pytest.raises(OggFormatError, match="capture pattern"):
        reader.feed(b"x")


def test_garbage_after_valid_pages() -> None:
    data = _stream([b"abc"])
    reader = OggPacketReader()
    with pytest.raises(OggFormatError, match="offset"):
        reader.feed(data[:-27] + b"GARBAGE GARBAGE GARBAGE GARBAGE")


def test_reader_is_poisoned_after_error() -> None:
    reader = OggPacketReader()
    with pytest.raises(OggFormatError):
        reader.feed(b"nonsense")
    with pytest.raises(OggFormatError):
        reader.feed(_stream([b"abc"]))


def test_large_garbage_does_not_hang() -> None:
    reader = OggPacketReader()
    with pytest.raises(OggFormatError):
        reader.feed(random.Random(0).randbytes(1 << 20))


@pytest.mark.parametrize("offset", [8, 14, 18, 22, 30, -1])
def test_bad_crc_raises(offset: int) -> None:
    data = bytearray(_stream([b"some packet data", b"more"]))
    pages = parse_pages(bytes(data))
    first_len = 27 + len(pages[0].lacing) + len(pages[0].body)
    # flip a bit of the first page: granule, serial, sequence, CRC field, body, last byte
    index = offset if offset >= 0 else first_len - 1
    data[index] ^= 0x10
    reader = OggPacketReader()
    with pytest.raises(OggFormatError, match="CRC"):
        reader.feed(bytes(data))


def test_bad_version_raises() -> None:
    page = bytearray(make_page(b"x", b"\x01", serial=1, sequence=0, granule=0, flags=FLAG_BOS))
    page[4] = 1
    with pytest.raises(OggFormatError, match="version"):
        OggPacketReader().feed(_with_crc(page))


def test_unknown_flags_raise() -> None:
    page = bytearray(make_page(b"x", b"\x01", serial=1, sequence=0, granule=0, flags=FLAG_BOS))
    page[5] |= 0x40
    with pytest.raises(OggFormatError, match="flags"):
        OggPacketReader().feed(_with_crc(page))


def _page(seq: int, body: bytes = b"p", flags: int = 0, serial: int = 1) -> bytes:
    return make_page(
        body, bytes([len(body)]), serial=serial, sequence=seq, granule=seq, flags=flags
    )


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ([_page(0)], "BOS"),  # stream joined midway
        ([_page(0, flags=FLAG_BOS), _page(2)], "sequence"),  # lost page
        ([_page(0, flags=FLAG_BOS), _page(0)], "sequence"),  # repeated page
        ([_page(0, flags=FLAG_BOS), _page(1, serial=2)], "serial"),
        ([_page(0, flags=FLAG_BOS), _page(1, flags=FLAG_BOS)], "BOS"),
        ([_page(0, flags=FLAG_BOS), _page(1, flags=FLAG_CONTINUED)], "none is open"),
        ([_page(0, flags=FLAG_BOS | FLAG_EOS), _page(1)], "after the end"),
    ],
)
def test_stream_structure_errors(pages: list[bytes], message: str) -> None:
    reader = OggPacketReader()
    with pytest.raises(OggFormatError, match=message):
        reader.feed(b"".join(pages))


def test_unfinished_packet_not_continued_raises() -> None:
    writer = OggPageWriter(1, max_segments=1)
    first = writer.write_packet(b"q" * 300, 1)  # first page ends inside the packet
    assert len(parse_pages(first)) == 1
    bogus = _page(1, b"new", flags=0)  # next page does not continue it
    with pytest.raises(OggFormatError, match="not continued"):
        OggPacketReader().feed(first + bogus)


def test_writer_copies_mutable_packets() -> None:
    buffer = bytearray(b"first")
    writer = OggPageWriter(1)
    assert writer.write_packet(buffer, 1) == b""  # pending
    buffer[:] = b"XXXXX"
    data = writer.flush()
    assert OggPacketReader().feed(data) == [b"first"]

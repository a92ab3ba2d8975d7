"""The codecs of a batch's records region: formats, other clients' streams, caps, damage."""

from __future__ import annotations

import random
import struct
import sys
import tracemalloc
from collections.abc import Callable

import aiokafka.codec
import cramjam
import kafka.codec
import lz4.frame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import CorruptRecordError
from logbroker.records import Compression, decode_batch, encode_batch
from logbroker.records.batch import HEADER
from logbroker.records.compression import compress, decompress

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

ALL = list(Compression)
COMPRESSED = [c for c in Compression if c != Compression.NONE]
XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)


def records_like(n: int, seed: int = 7) -> bytes:
    """Bytes that compress the way record batches do: repetitive, with some noise."""
    rng = random.Random(seed)
    words = [b"order", b"created", b"paid", b"shipped", b"customer", b"eu-west", b"\x00\x02"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + rng.randbytes(rng.randrange(3))
    return bytes(out[:n])


def xerial_blocks(stream: bytes) -> list[bytes]:
    """The raw snappy blocks of a xerial stream, walked by hand."""
    assert stream.startswith(XERIAL_HEADER)
    blocks, pos = [], len(XERIAL_HEADER)
    while pos < len(stream):
        (n,) = struct.unpack_from(">i", stream, pos)
        blocks.append(stream[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(stream)
    return blocks


def zstd_streamed(data: bytes) -> bytes:
    """A zstd frame without its content size, as librdkafka and Java's zstd-jni write."""
    packer = zstd.ZstdCompressor()
    return packer.compress(data) + packer.flush()


# -- round trips and formats ----------------------------------------------------------------------


@given(st.sampled_from(ALL), st.binary(max_size=5000) | st.builds(records_like, st.integers(0, 200_000)))
def test_round_trip(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    assert decompress(codec, packed, max_size=len(data)) == data


@pytest.mark.parametrize("codec", COMPRESSED)
def test_the_cap_is_exact(codec: Compression) -> None:
    data = records_like(3 << 20)  # more than one output step, lz4 block and snappy block
    packed = compress(codec, data)
    assert len(packed) < len(data)
    assert decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(CorruptRecordError, match=f"{codec.label} data inflates past the cap of"):
        decompress(codec, packed, max_size=len(data) - 1)


def test_snappy_is_written_in_xerial_blocks_of_32_kib() -> None:
    data = records_like(100_000)
    blocks = xerial_blocks(compress(Compression.SNAPPY, data))
    assert len(blocks) == 4  # 32 KiB x 3 + 1696 bytes
    assert b"".join(bytes(cramjam.snappy.decompress_raw(b)) for b in blocks) == data
    assert [len(bytes(cramjam.snappy.decompress_raw(b))) for b in blocks] == [32768] * 3 + [1696]


def test_lz4_is_one_frame_of_independent_64_kib_blocks() -> None:
    packed = compress(Compression.LZ4, records_like(200_000))
    assert packed[:4] == b"\x04\x22\x4d\x18"
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 0b01  # frame format version 1
    assert flg & 0x20  # blocks are independent: Java's reader refuses linked ones
    assert (bd >> 4) & 0x7 == 4  # 64 KiB blocks, like Java's KafkaLZ4BlockOutputStream
    assert lz4.frame.get_frame_info(packed)["block_linked"] is False


def test_zstd_is_one_frame() -> None:
    packed = compress(Compression.ZSTD, records_like(200_000))
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
    assert zstd.get_frame_info(packed).decompressed_size == 200_000


# -- other implementations, both ways -------------------------------------------------------------

# kafka-python's codec module (python-snappy, python-lz4, zstandard) and aiokafka's (cramjam).
WRITERS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    "kafka-python gzip": (Compression.GZIP, kafka.codec.gzip_encode),
    "kafka-python snappy": (Compression.SNAPPY, kafka.codec.snappy_encode),
    "kafka-python raw snappy": (
        Compression.SNAPPY,
        lambda d: kafka.codec.snappy_encode(d, xerial_compatible=False),
    ),
    "kafka-python lz4": (Compression.LZ4, kafka.codec.lz4_encode),
    "kafka-python zstd": (Compression.ZSTD, kafka.codec.zstd_encode),
    "aiokafka snappy": (Compression.SNAPPY, aiokafka.codec.snappy_encode),
    "aiokafka raw snappy": (
        Compression.SNAPPY,
        lambda d: aiokafka.codec.snappy_encode(d, xerial_compatible=False),
    ),
    "aiokafka lz4": (Compression.LZ4, aiokafka.codec.lz4_encode),
    "aiokafka zstd": (Compression.ZSTD, aiokafka.codec.zstd_encode),
}

READERS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    "kafka-python gzip": (Compression.GZIP, kafka.codec.gzip_decode),
    "kafka-python snappy": (Compression.SNAPPY, kafka.codec.snappy_decode),
    "kafka-python lz4": (Compression.LZ4, kafka.codec.lz4_decode),
    "kafka-python zstd": (Compression.ZSTD, kafka.codec.zstd_decode),
    "aiokafka snappy": (Compression.SNAPPY, aiokafka.codec.snappy_decode),
    "aiokafka lz4": (Compression.LZ4, aiokafka.codec.lz4_decode),
    "aiokafka zstd": (Compression.ZSTD, aiokafka.codec.zstd_decode),
}

payloads = st.binary(min_size=1, max_size=3000) | st.builds(records_like, st.integers(1, 300_000))


@pytest.mark.parametrize("writer", list(WRITERS))
@given(data=payloads)
def test_we_read_what_other_clients_write(writer: str, data: bytes) -> None:
    codec, encode = WRITERS[writer]
    assert decompress(codec, bytes(encode(data))) == data


@pytest.mark.parametrize("reader", list(READERS))
@given(data=payloads)
def test_other_clients_read_what_we_write(reader: str, data: bytes) -> None:
    codec, decode = READERS[reader]
    assert bytes(decode(compress(codec, data))) == data


VARIANTS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    # snappy-java reads a second stream header between blocks as the start of a concatenated stream.
    "snappy concatenated streams": (
        Compression.SNAPPY,
        lambda d: compress(Compression.SNAPPY, d[:40_000]) + compress(Compression.SNAPPY, d[40_000:]),
    ),
    # Redpanda has written the version words little-endian; kafka-python ignores them, as we do.
    "snappy little-endian version": (
        Compression.SNAPPY,
        lambda d: b"\x82SNAPPY\x00" + struct.pack("<ii", 1, 1) + compress(Compression.SNAPPY, d)[16:],
    ),
    "lz4 without content size": (
        Compression.LZ4,
        lambda d: lz4.frame.compress(d, block_linked=False, store_size=False),
    ),
    "lz4 linked 4 MiB blocks with checksums": (
        Compression.LZ4,
        lambda d: lz4.frame.compress(
            d,
            block_size=lz4.frame.BLOCKSIZE_MAX4MB,
            block_linked=True,
            content_checksum=True,
            block_checksum=True,
        ),
    ),
    "lz4 two frames": (
        Compression.LZ4,
        lambda d: lz4.frame.compress(d[:1000], block_linked=False) + lz4.frame.compress(d[1000:]),
    ),
    "zstd without content size": (Compression.ZSTD, zstd_streamed),
    "zstd with a checksum": (
        Compression.ZSTD,
        lambda d: zstd.compress(d, options={zstd.CompressionParameter.checksum_flag: 1}),
    ),
    "zstd two frames": (Compression.ZSTD, lambda d: zstd.compress(d[:1000]) + zstd_streamed(d[1000:])),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stream_variants_are_read(variant: str) -> None:
    codec, encode = VARIANTS[variant]
    data = records_like(300_000)
    packed = encode(data)
    assert decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(CorruptRecordError, match="cap"):
        decompress(codec, packed, max_size=len(data) - 1)


def test_librdkafka_style_zstd_has_no_content_size() -> None:
    # The case the zstd cap exists for: nothing in the frame says how big it will get.
    assert zstd.get_frame_info(zstd_streamed(b"x" * 1000)).decompressed_size is None


# -- compression bombs ----------------------------------------------------------------------------

BOMBS: dict[str, tuple[Compression, Callable[[bytes], bytes]]] = {
    "gzip": (Compression.GZIP, lambda d: compress(Compression.GZIP, d)),
    "snappy": (Compression.SNAPPY, lambda d: compress(Compression.SNAPPY, d)),
    "raw snappy": (Compression.SNAPPY, lambda d: bytes(cramjam.snappy.compress_raw(d))),
    "lz4": (Compression.LZ4, lambda d: compress(Compression.LZ4, d)),
    "lz4 without content size": (
        Compression.LZ4,
        lambda d: lz4.frame.compress(d, block_linked=False, store_size=False),
    ),
    "lz4 4 MiB blocks": (
        Compression.LZ4,
        lambda d: lz4.frame.compress(d, block_size=lz4.frame.BLOCKSIZE_MAX4MB, store_size=False),
    ),
    "zstd": (Compression.ZSTD, lambda d: compress(Compression.ZSTD, d)),
    "zstd without content size": (Compression.ZSTD, zstd_streamed),
}

CAP = 1 << 20


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_bomb_is_refused_before_it_inflates_past_the_cap(bomb: str) -> None:
    codec, encode = BOMBS[bomb]
    packed = encode(b"\x00" * (32 << 20))
    assert len(packed) < (2 << 20)
    # The stream's tail is cut off: a decoder that inflated everything before looking at the cap
    # would find the damage first and say so, instead of refusing at the cap.
    damaged_tail = packed[: len(packed) - 16]
    tracemalloc.start()
    try:
        with pytest.raises(CorruptRecordError, match=f"inflates past the cap of {CAP} bytes"):
            decompress(codec, damaged_tail, max_size=CAP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP  # what was asked for and allocated stayed near the cap, not 32 MiB


def test_a_snappy_block_is_refused_on_its_declared_length() -> None:
    # A raw block declaring 4 GiB in 8 bytes: refused on the length, before anything is allocated
    # (decoding it would fail as damaged, not as too big).
    lying = b"\xff\xff\xff\xff\x0f" + b"\x00\x01\x02"
    with pytest.raises(CorruptRecordError, match="cap"):
        decompress(Compression.SNAPPY, lying)
    with pytest.raises(CorruptRecordError, match="cap"):
        decompress(Compression.SNAPPY, XERIAL_HEADER + struct.pack(">i", len(lying)) + lying)


def test_snappy_blocks_count_against_one_cap() -> None:
    data = records_like(200_000)
    packed = compress(Compression.SNAPPY, data)
    assert len(xerial_blocks(packed)) == 7
    with pytest.raises(CorruptRecordError, match="cap"):
        decompress(Compression.SNAPPY, packed, max_size=199_999)


# -- damaged streams ------------------------------------------------------------------------------

_SAMPLE = records_like(70_000)
_LZ4 = compress(Compression.LZ4, _SAMPLE)
_ZSTD = compress(Compression.ZSTD, _SAMPLE)

DAMAGED: dict[str, tuple[Compression, bytes]] = {
    "gzip empty": (Compression.GZIP, b""),
    "gzip cut": (Compression.GZIP, compress(Compression.GZIP, _SAMPLE)[:-3]),
    "snappy empty": (Compression.SNAPPY, b""),
    "snappy length never ends": (Compression.SNAPPY, b"\xff\xff\xff\xff\xff\x01"),
    "snappy block shorter than it says": (Compression.SNAPPY, b"\x0a\x08abc"),
    "snappy raw garbage": (Compression.SNAPPY, b"\x10" + bytes(range(200, 216))),
    "snappy header cut": (Compression.SNAPPY, XERIAL_HEADER[:12]),
    "snappy block length cut": (Compression.SNAPPY, XERIAL_HEADER + b"\x00\x00"),
    "snappy negative block length": (Compression.SNAPPY, XERIAL_HEADER + b"\xff\xff\xff\xf0" + b"x" * 20),
    "snappy block past the end": (Compression.SNAPPY, XERIAL_HEADER + struct.pack(">i", 100) + b"\x05abc"),
    "snappy damaged block": (
        Compression.SNAPPY,
        XERIAL_HEADER + struct.pack(">i", 6) + b"\x20\xff\xff\xff\xff\xff",
    ),
    "lz4 empty": (Compression.LZ4, b""),
    "lz4 not a frame": (Compression.LZ4, b"\x00" * 40),
    "lz4 bad version": (Compression.LZ4, _LZ4[:4] + bytes([_LZ4[4] & 0x3F]) + _LZ4[5:]),
    "lz4 header checksum": (Compression.LZ4, _LZ4[:6] + bytes([_LZ4[6] ^ 1]) + _LZ4[7:]),
    "lz4 cut": (Compression.LZ4, _LZ4[: len(_LZ4) // 2]),
    "lz4 cut in its end mark": (Compression.LZ4, _LZ4[:-2]),
    "lz4 trailing garbage": (Compression.LZ4, _LZ4 + b"garbage!"),
    "zstd empty": (Compression.ZSTD, b""),
    "zstd not a frame": (Compression.ZSTD, b"\x00" * 40),
    "zstd cut": (Compression.ZSTD, _ZSTD[: len(_ZSTD) // 2]),
    "zstd cut by a byte": (Compression.ZSTD, _ZSTD[:-1]),
    "zstd trailing garbage": (Compression.ZSTD, _ZSTD + b"garbage!"),
    "zstd block damaged": (Compression.ZSTD, _ZSTD[:20] + bytes(64) + _ZSTD[84:]),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_streams_raise_corrupt_record_error(case: str) -> None:
    codec, data = DAMAGED[case]
    with pytest.raises(CorruptRecordError, match=codec.label):
        decompress(codec, data)


@given(
    st.sampled_from(COMPRESSED),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=5),
    st.none() | st.integers(0, 10**6),
)
def test_any_damage_gives_bytes_or_corrupt_record_error(
    codec: Compression, flips: list[tuple[int, int]], cut: int | None
) -> None:
    # Never a library's own exception, whatever the damage.
    data = bytearray(compress(codec, records_like(50_000)))
    for at, xor in flips:
        data[at % len(data)] ^= xor
    if cut is not None:
        del data[cut % len(data) :]
    try:
        decompress(codec, bytes(data), max_size=100_000)
    except CorruptRecordError:
        pass


def with_body(batch: bytes, body: bytes) -> bytes:
    fields = list(HEADER.unpack_from(batch))
    fields[1] = 49 + len(body)
    return HEADER.pack(*fields) + body


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_batch_cut_anywhere_in_its_records_is_refused(codec: Compression) -> None:
    values = [b"record %d " % i * 3 for i in range(30)]
    batch = encode_batch(values, keys=[b"k"] * 30, compression=codec)
    body = batch[61:]
    for cut in range(len(body)):
        with pytest.raises(CorruptRecordError):
            decode_batch(with_body(batch, body[:cut]), check_crc=False)


def test_a_snappy_batch_cut_at_a_block_boundary_is_refused() -> None:
    # The stream itself is whole there (xerial has no end mark); the records are not.
    values = [records_like(1000, seed=i) for i in range(100)]
    batch = encode_batch(values, compression=Compression.SNAPPY)
    body = batch[61:]
    first = xerial_blocks(body)[0]
    cut = len(XERIAL_HEADER) + 4 + len(first)
    assert len(decompress(Compression.SNAPPY, body[:cut])) == 32768
    with pytest.raises(CorruptRecordError):
        decode_batch(with_body(batch, body[:cut]), check_crc=False)

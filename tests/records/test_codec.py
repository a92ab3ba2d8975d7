"""Records inside a batch: round trips, compression, untrusted input."""

import gzip
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import CorruptRecordError, LogbrokerError
from logbroker.records import Compression, decode_batch, encode_batch, iter_records, validate_batch
from logbroker.records.batch import ATTR_CONTROL, HEADER

maybe_bytes = st.none() | st.binary(max_size=200)
header_lists = st.lists(st.tuples(st.text(max_size=10), maybe_bytes), max_size=4)


@st.composite
def columns(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    n = draw(st.integers(1, 30))
    cols: dict = {"values": draw(st.lists(maybe_bytes, min_size=n, max_size=n))}  # type: ignore[type-arg]
    if draw(st.booleans()):
        cols["keys"] = draw(st.lists(maybe_bytes, min_size=n, max_size=n))
    if draw(st.booleans()):
        cols["headers"] = draw(st.lists(header_lists, min_size=n, max_size=n))
    if draw(st.booleans()):
        base = draw(st.integers(0, 2**41))
        cols["timestamps"] = draw(st.lists(st.integers(base - 10**6, base + 10**6), min_size=n, max_size=n))
    else:
        cols["timestamp"] = draw(st.integers(0, 2**42))
    cols["compression"] = draw(st.sampled_from(list(Compression)))
    return cols


@given(columns(), st.integers(0, 2**62))
def test_round_trip(cols: dict, base_offset: int) -> None:  # type: ignore[type-arg]
    data = encode_batch(base_offset=base_offset, **cols)
    header = validate_batch(data)
    assert header.compression == cols["compression"]
    _, recs = decode_batch(data)
    n = len(cols["values"])
    assert [r.offset for r in recs] == list(range(base_offset, base_offset + n))
    assert [r.value for r in recs] == cols["values"]
    assert [r.key for r in recs] == cols.get("keys", [None] * n)
    assert [list(r.headers) for r in recs] == [list(h) for h in cols.get("headers", [[]] * n)]
    expected_ts = cols.get("timestamps", [cols.get("timestamp")] * n)
    assert [r.timestamp for r in recs] == expected_ts
    assert header.max_timestamp == max(expected_ts)


def test_default_timestamp_is_now() -> None:
    import time

    before = int(time.time() * 1000)
    _, recs = decode_batch(encode_batch([b"x"]))
    assert before <= recs[0].timestamp <= int(time.time() * 1000)


def test_large_values_use_multi_byte_lengths() -> None:
    big = b"z" * 100_000
    _, recs = decode_batch(encode_batch([big, b"small"], keys=[b"k" * 20_000, None]))
    assert recs[0].value == big
    assert recs[0].key == b"k" * 20_000
    assert recs[1].value == b"small"


def test_column_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="keys"):
        encode_batch([b"a", b"b"], keys=[b"k"])
    with pytest.raises(ValueError, match="at least one"):
        encode_batch([])


def test_iter_records_skips_control_batches_and_partial_tails() -> None:
    control = encode_batch([b"\x00\x00\x00\x00"], keys=[b"\x00\x00\x00\x01"], attributes=ATTR_CONTROL)
    data = encode_batch([b"a"]) + control + encode_batch([b"b", b"c"])
    assert [r.value for r in iter_records(data + data[:30])] == [b"a", b"b", b"c"]


def test_gzip_bomb_is_refused_not_inflated() -> None:
    bomb = encode_batch([b"\x00" * 2_000_000], compression=Compression.GZIP)
    assert len(bomb) < 10_000
    with pytest.raises(CorruptRecordError, match="cap"):
        decode_batch(bomb, max_decompressed=100_000)
    assert decode_batch(bomb)[1][0].value == b"\x00" * 2_000_000


def test_damaged_gzip_stream_is_a_typed_error() -> None:
    data = bytearray(encode_batch([b"hello" * 100], compression=Compression.GZIP))
    data[-6] ^= 0xFF  # inside the gzip trailer's CRC-32
    with pytest.raises(CorruptRecordError):
        decode_batch(bytes(data), check_crc=False)


@pytest.mark.parametrize("codec", [Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
def test_every_codec_is_decoded_and_capped(codec: Compression) -> None:
    data = encode_batch([b"x" * 50_000, b"y"], keys=[b"k", None], compression=codec)
    assert len(data) < 5000
    assert [r.value for r in decode_batch(data)[1]] == [b"x" * 50_000, b"y"]
    with pytest.raises(CorruptRecordError, match=f"{codec.label} data inflates past the cap"):
        decode_batch(data, max_decompressed=10_000)


def test_an_uncompressed_body_under_a_codec_flag_is_corrupt() -> None:
    plain = bytearray(encode_batch([b"x"]))
    for codec in (Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        struct.pack_into(">h", plain, 21, int(codec))
        with pytest.raises(CorruptRecordError):
            decode_batch(bytes(plain), check_crc=False)


def test_gzip_written_by_the_gzip_module_is_read() -> None:
    # Kafka's Java client and kafka-python write plain gzip streams.
    body = encode_batch([b"one", b"two"])[61:]
    head = bytearray(encode_batch([b"one", b"two"])[:61])
    packed = gzip.compress(body)
    fields = list(HEADER.unpack_from(head))
    fields[1] = 49 + len(packed)
    fields[5] = int(Compression.GZIP)
    data = HEADER.pack(*fields) + packed
    assert [r.value for r in decode_batch(data, check_crc=False)[1]] == [b"one", b"two"]


@pytest.mark.parametrize(
    "body_hex",
    [
        "",  # no records at all
        "00",  # a record of length 0
        "7f",  # a negative record length
        "1600000001",  # cut inside a record
        "160000000116",  # value length past the record
        "0e000000010a",  # record length disagrees with its fields
        "160000000001" + "0a68656c6c6f" + "ffffffff0f",  # huge header count
    ],
)
def test_lying_record_bodies_raise_typed_errors(body_hex: str) -> None:
    head = bytearray(encode_batch([b"hello"])[:61])
    body = bytes.fromhex(body_hex)
    fields = list(HEADER.unpack_from(head))
    fields[1] = 49 + len(body)
    with pytest.raises(CorruptRecordError):
        decode_batch(HEADER.pack(*fields) + body, check_crc=False)


def test_record_count_claims_are_checked_before_allocation() -> None:
    head = bytearray(encode_batch([b"hello"]))
    struct.pack_into(">i", head, 57, 2**31 - 1)
    with pytest.raises(CorruptRecordError, match="claims"):
        decode_batch(bytes(head), check_crc=False)


@given(st.binary(min_size=0, max_size=200))
def test_random_record_bodies_raise_only_typed_errors(body: bytes) -> None:
    head = bytearray(encode_batch([b"hello"])[:61])
    fields = list(HEADER.unpack_from(head))
    fields[1] = 49 + len(body)
    fields[12] = len(body) // 7
    try:
        decode_batch(HEADER.pack(*fields) + body, check_crc=False)
    except LogbrokerError:
        pass

"""The batch header: golden bytes, validation, offset stamping, untrusted input."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import CorruptRecordError, InvalidRecordError, LogbrokerError
from logbroker.records import (
    BATCH_OVERHEAD,
    decode_batch,
    encode_batch,
    parse_header,
    stamp_base_offset,
    validate_batch,
    validate_batches,
)
from logbroker.records.batch import batch_crc, check_records
from tests.helpers import batch

# kafka-format.md 1.5: one record, null key, value "hello", timestamp 1700000000000, written by
# kafka-python 3.0.12 (partitionLeaderEpoch 0).
HELLO = bytes.fromhex(
    "0000000000000000"
    "0000003d"
    "00000000"
    "02"
    "e641a44b"
    "0000"
    "00000000"
    "0000018bcfe56800"
    "0000018bcfe56800"
    "ffffffffffffffff"
    "ffff"
    "ffffffff"
    "00000001"
    "16000000010a68656c6c6f00"
)

# Three records with keys, nulls, headers and a timestamp older than the first, built by
# kafka-python's DefaultRecordBatchBuilder (checked when this vector was recorded).
THREE = bytes.fromhex(
    "0000000000000000000000570000000002133e6fb50000000000020000018bcfe568000000018bcfe56805"
    "ffffffffffffffffffffffffffff000000031c000000046b3104763102026802780c000a020101001e0013"
    "040004ff000402610104626200"
)


def test_golden_single_record_batch() -> None:
    built = encode_batch([b"hello"], timestamp=1_700_000_000_000, partition_leader_epoch=0)
    assert built == HELLO
    header = validate_batch(HELLO)
    assert header.crc == 0xE641A44B
    assert (header.size, header.records_count, header.last_offset) == (73, 1, 0)


def test_golden_three_records() -> None:
    header, recs = decode_batch(THREE)
    assert header.crc == 0x133E6FB5
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in recs] == [
        (0, 1_700_000_000_000, b"k1", b"v1", (("h", b"x"),)),
        (1, 1_700_000_000_005, None, None, ()),
        (2, 1_699_999_999_990, b"", b"\xff\x00", (("a", None), ("bb", b""))),
    ]
    rebuilt = encode_batch(
        [r.value for r in recs],
        keys=[r.key for r in recs],
        headers=[r.headers for r in recs],
        timestamps=[r.timestamp for r in recs],
        partition_leader_epoch=0,
    )
    assert rebuilt == THREE


def test_stamping_the_base_offset_keeps_the_crc() -> None:
    data = bytearray(HELLO)
    stamp_base_offset(data, 42)
    header = validate_batch(data)
    assert header.base_offset == 42
    assert header.crc == 0xE641A44B
    assert bytes(data[8:]) == HELLO[8:]
    assert decode_batch(data)[1][0].offset == 42


def test_validate_batches_walks_concatenated_batches() -> None:
    data = batch(3) + batch(1) + batch(5)
    assert [h.records_count for h in validate_batches(data)] == [3, 1, 5]


def _with(data: bytes, fmt: str, at: int, value: int, fix_crc: bool = False) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    if fix_crc:
        from crc32c import crc32c

        struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return bytes(out)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d[:60], CorruptRecordError, "cut short"),
        (lambda d: d[:-1], CorruptRecordError, "only 72 are there"),
        (lambda d: _with(d, ">b", 16, 1), CorruptRecordError, "magic 1"),
        (lambda d: _with(d, ">i", 8, 10), CorruptRecordError, "shorter than its header"),
        (lambda d: _with(d, ">i", 8, 2**31 - 1), CorruptRecordError, "only 73 are there"),
        (lambda d: d[:-2] + b"X" + d[-1:], CorruptRecordError, "CRC"),
        (lambda d: _with(d, ">i", 57, 2, fix_crc=True), InvalidRecordError, "lastOffsetDelta"),
        (lambda d: _with(d, ">i", 57, 0, fix_crc=True), InvalidRecordError, "0 records"),
        (lambda d: _with(d, ">h", 21, 0x0100, fix_crc=True), InvalidRecordError, "attribute"),
        (lambda d: _with(d, ">h", 21, 0x0007, fix_crc=True), InvalidRecordError, "attribute"),
    ],
)
def test_validation_names_what_is_wrong(mutate, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        validate_batch(mutate(HELLO))


def test_validate_batches_refuses_trailing_garbage_and_empty_input() -> None:
    with pytest.raises(CorruptRecordError):
        validate_batches(HELLO + b"\x00" * 5)
    with pytest.raises(CorruptRecordError, match="empty"):
        validate_batches(b"")


def test_parse_header_reads_without_checking_the_crc() -> None:
    header = parse_header(HELLO[:BATCH_OVERHEAD])
    assert header.records_count == 1


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_typed_errors(data: bytes) -> None:
    try:
        validate_batches(data)
    except LogbrokerError:
        pass


@given(st.data())
def test_mutated_batches_raise_only_typed_errors(data: st.DataObject) -> None:
    original = bytearray(THREE)
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(original) - 1))
        original[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytes(original[:cut])
    for check in (validate_batches, decode_batch, lambda b: decode_batch(b, check_crc=False)):
        try:
            check(mutated)
        except LogbrokerError:
            pass


def test_huge_length_claim_is_refused_before_allocation() -> None:
    # A 2 GiB length claim in a 73-byte buffer: refused from the header alone.
    with pytest.raises(CorruptRecordError):
        validate_batch(_with(HELLO, ">i", 8, 2**31 - 1))
    with pytest.raises(CorruptRecordError):
        decode_batch(_with(HELLO, ">i", 8, 2**31 - 1))


@given(
    values=st.lists(st.binary(max_size=300) | st.none(), min_size=1, max_size=200),
    keys=st.booleans(),
)
def test_check_records_passes_every_batch_we_encode(values: list[bytes | None], keys: bool) -> None:
    data = encode_batch(values, keys=values if keys else None)
    check_records(data, 0, parse_header(data, 0))


def _recrc(data: bytearray) -> bytes:
    struct.pack_into(">I", data, 17, batch_crc(data, 0, len(data)))
    return bytes(data)


@pytest.mark.parametrize("claimed", [1, 2, 4, 9])
def test_check_records_refuses_a_count_that_lies(claimed: int) -> None:
    data = bytearray(encode_batch([b"a" * 70, b"b", b"c"]))
    struct.pack_into(">i", data, 57, claimed)
    struct.pack_into(">i", data, 23, claimed - 1)
    data = bytearray(_recrc(data))
    header = validate_batch(data)  # the header alone is consistent
    with pytest.raises(InvalidRecordError, match="declares"):
        check_records(data, 0, header)


def test_check_records_refuses_offset_deltas_that_lie_and_records_that_overrun() -> None:
    data = bytearray(encode_batch([b"a", b"b"]))
    # The second record: length, attributes, timestamp delta, then its offset delta (zigzag 1 = 2).
    first_length = data[61] >> 1
    second = 61 + 1 + first_length
    assert data[second + 3] == 2
    data[second + 3] = 4  # offset delta 2
    with pytest.raises(InvalidRecordError, match="offset delta 2"):
        check_records(data, 0, parse_header(data, 0))
    data = bytearray(encode_batch([b"a", b"b"]))
    data[second] += 20  # the last record claims more bytes than the batch holds
    with pytest.raises(InvalidRecordError):
        check_records(data, 0, parse_header(data, 0))

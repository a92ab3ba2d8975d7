"""Kafka RecordBatch v2 ("magic 2") headers: layout, validation, offset stamping.

A partition's data, on disk and on the wire alike, is a plain concatenation of record batches.
Every multi-byte integer in the header is big-endian. The header is 61 bytes:

    offset  width  field                 notes
    ------  -----  --------------------  ---------------------------------------------------------
       0      8    baseOffset     int64  offset of the first record; producers send 0, the broker
                                         stamps it on append (outside the CRC, so stamping is free)
       8      4    batchLength    int32  bytes after this field: total batch size - 12
      12      4    partitionLeaderEpoch  int32, outside the CRC
      16      1    magic          int8   always 2
      17      4    crc            uint32 CRC-32C (Castagnoli) of bytes [21, end of batch)
      21      2    attributes     int16  bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd),
                                         3 timestamp type (1 = LogAppendTime), 4 transactional,
                                         5 control batch, 6 delete horizon; bits 7-15 are 0
      23      4    lastOffsetDelta int32 offset of the last record - baseOffset
      27      8    baseTimestamp  int64  timestamp of the first record (ms), -1 if none
      35      8    maxTimestamp   int64  largest record timestamp (or the append time)
      43      8    producerId     int64  -1 unless idempotent or transactional
      51      2    producerEpoch  int16  -1 unless idempotent
      53      4    baseSequence   int32  -1 unless idempotent
      57      4    recordsCount   int32  number of records that follow
      61      ...  records               `recordsCount` records; when compressed, one compressed
                                         stream of them (the header itself is never compressed)

               |<-------------- covered by the CRC ------------------------------------->|
    baseOffset | batchLength | epoch | magic | crc | attributes ... recordsCount | records |

The broker validates a batch from its header and CRC alone and never re-encodes records: it stamps
the base offset (bytes 0-7) and stores the bytes as they came.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from crc32c import crc32c

from logbroker.errors import CorruptRecordError, InvalidRecordError
from logbroker.records.varint import decode_varint

__all__ = [
    "BATCH_OVERHEAD",
    "CRC_START",
    "HEADER",
    "LOG_OVERHEAD",
    "MAGIC",
    "BatchHeader",
    "batch_crc",
    "parse_header",
    "stamp_base_offset",
    "check_records",
    "validate_batch",
    "validate_batches",
]

HEADER = struct.Struct(">qiibIhiqqqhii")
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes that precede what batchLength counts
BATCH_OVERHEAD = HEADER.size  # 61: the smallest possible batch (no records)
CRC_START = 21
MAGIC = 2
OFFSET = struct.Struct(">q")
SIZE_PREFIX = struct.Struct(">qib")  # baseOffset, batchLength, and the magic byte at 16

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40
_ATTR_UNUSED = ~0x7F & 0xFFFF
_MAX_CODEC = 4

MAX_BATCH_LENGTH = (1 << 31) - 1


class BatchHeader(NamedTuple):
    """The 61-byte header of one batch, field for field."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch takes."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_CODEC_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Read the header of the batch at `buf[pos]` and check its magic and length field.

    Does not check that the whole batch is present or its CRC: see `validate_batch`.
    """
    if len(buf) - pos < BATCH_OVERHEAD:
        raise CorruptRecordError(
            f"batch at byte {pos} is cut short: {max(len(buf) - pos, 0)} of {BATCH_OVERHEAD} header bytes"
        )
    header = BatchHeader._make(HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptRecordError(
            f"batch at byte {pos} has magic {header.magic}; only record batch v2 (magic 2) is supported"
        )
    if header.batch_length < BATCH_OVERHEAD - LOG_OVERHEAD:
        raise CorruptRecordError(
            f"batch at byte {pos} claims a length of {header.batch_length}, shorter than its header"
        )
    return header


def batch_crc(buf: bytes | bytearray | memoryview, pos: int, end: int) -> int:
    """CRC-32C of the range Kafka's batch CRC covers, for the batch in `buf[pos:end]`."""
    with memoryview(buf) as view:
        return crc32c(view[pos + CRC_START : end])


def validate_batch(
    buf: bytes | bytearray | memoryview, pos: int = 0, header: BatchHeader | None = None
) -> BatchHeader:
    """Check the batch at `buf[pos]`: magic, lengths, CRC, record count, attributes.

    Returns its header (`header`: what `parse_header` already read of it, not read again).
    Raises `CorruptRecordError` for bytes that are not an intact batch and `InvalidRecordError`
    for an intact batch that breaks Kafka's produce rules.
    """
    if header is None:
        header = parse_header(buf, pos)
    end = pos + header.size
    if end > len(buf):
        raise CorruptRecordError(
            f"batch at byte {pos} claims {header.size} bytes but only {len(buf) - pos} are there"
        )
    actual = batch_crc(buf, pos, end)
    if actual != header.crc:
        raise CorruptRecordError(
            f"batch at byte {pos} fails its CRC: stored {header.crc:#010x}, computed {actual:#010x}"
        )
    if header.records_count <= 0:
        raise InvalidRecordError(f"batch at byte {pos} holds {header.records_count} records")
    if header.last_offset_delta != header.records_count - 1:
        raise InvalidRecordError(
            f"batch at byte {pos} has lastOffsetDelta {header.last_offset_delta} "
            f"for {header.records_count} records"
        )
    if header.attributes & _ATTR_UNUSED or header.compression > _MAX_CODEC:
        raise InvalidRecordError(f"batch at byte {pos} has unknown attribute bits {header.attributes:#06x}")
    return header


def check_records(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> None:
    """For an uncompressed batch: its records fill it exactly, there are `records_count` of
    them, and each one's offset delta is its index, as Kafka's log validator requires. A batch
    whose count lies would give its records offsets that overlap those of the next batch.

    Reads three varints a record (length, timestamp delta, offset delta) and nothing else, with
    the common one- and two-byte forms inline. Compressed batches are checked this way only by
    whoever decompresses them.
    """
    end = pos + header.size
    p = pos + BATCH_OVERHEAD
    index = 0
    try:
        while p < end:
            b = buf[p]
            if b < 0x80:
                length, p = (b >> 1) ^ -(b & 1), p + 1
            elif buf[p + 1] < 0x80:
                v = (b & 0x7F) | (buf[p + 1] << 7)
                length, p = (v >> 1) ^ -(v & 1), p + 2
            else:
                length, p = decode_varint(buf, p, 5)  # type: ignore[arg-type]
            next_record = p + length
            p += 1  # the attributes
            b = buf[p]  # the timestamp delta: skipped
            if b < 0x80:
                p += 1
            else:
                p = decode_varint(buf, p, 10)[1]  # type: ignore[arg-type]
            b = buf[p]
            if b < 0x80:
                delta = (b >> 1) ^ -(b & 1)
            elif buf[p + 1] < 0x80:
                v = (b & 0x7F) | (buf[p + 1] << 7)
                delta = (v >> 1) ^ -(v & 1)
            else:
                delta = decode_varint(buf, p, 5)[0]  # type: ignore[arg-type]
            if delta != index or length <= 0:
                raise InvalidRecordError(
                    f"record {index} of the batch at byte {pos} has offset delta {delta} and length {length}"
                )
            p = next_record
            index += 1
    except (CorruptRecordError, IndexError):
        raise InvalidRecordError(f"the records of the batch at byte {pos} run past its end") from None
    if p != end or index != header.records_count:
        raise InvalidRecordError(
            f"the batch at byte {pos} declares {header.records_count} records and holds "
            + (f"{index}" if p == end else f"records that run {p - end} bytes past its end")
        )


def validate_batches(buf: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Validate a buffer that must hold one or more whole batches and nothing else."""
    headers = []
    pos = 0
    end = len(buf)
    if end == 0:
        raise CorruptRecordError("no record batch in an empty buffer")
    while pos < end:
        header = validate_batch(buf, pos)
        headers.append(header)
        pos += header.size
    return headers


def stamp_base_offset(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Overwrite the base offset of the batch at `buf[pos]`; the CRC stays valid."""
    OFFSET.pack_into(buf, pos, base_offset)

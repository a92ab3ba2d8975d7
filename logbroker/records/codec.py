"""Records inside a batch: encoding a batch from columns of values, decoding it back.

Record layout (inside the records region of a batch, after decompression):

    length          varint   bytes of the rest of this record
    attributes      int8     always 0
    timestampDelta  varlong  record timestamp - baseTimestamp
    offsetDelta     varint   record offset - baseOffset
    keyLength       varint   -1 for a null key
    key             bytes
    valueLength     varint   -1 for a null value
    value           bytes
    headersCount    varint   >= 0
    headers         headersCount x (keyLength varint, UTF-8 key, valueLength varint (-1 = null), value)

Mostly client-side work: the broker's produce and fetch paths move whole batches and decode no
record (the Kafka listener only walks an uncompressed batch's record lengths, in
`batch.check_records`). The broker decodes records only off those paths (a record it copies to a
dead-letter topic, the timestamp a Kafka ListOffsets by time answers with, the `__offsets` log it
replays at start). So this is written for per-record speed: small varints come from a table,
each batch is joined once, and decoding takes the one-byte varint path inline. Decoding treats
its input as untrusted: every length is checked against the bytes that remain before anything is
sliced, and only `CorruptRecordError` escapes (a compressed body included: see `compression`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, TypeVar

from crc32c import crc32c

from logbroker.errors import CorruptRecordError
from logbroker.records.batch import (
    ATTR_CODEC_MASK,
    BATCH_OVERHEAD,
    CRC_START,
    HEADER,
    LOG_OVERHEAD,
    BatchHeader,
    parse_header,
)
from logbroker.records.compression import DEFAULT_MAX_DECOMPRESSED, Compression, compress, decompress
from logbroker.records.varint import SMALL, decode_varint, encode_varint

__all__ = [
    "Header",
    "Record",
    "decode_batch",
    "decode_batch_as",
    "encode_batch",
    "iter_batches",
    "iter_records",
]

Header = tuple[str, "bytes | None"]
T = TypeVar("T")
_NULL = SMALL[-1]
_SMALL_LIMIT = len(SMALL) - 1


#: attributes 0, timestampDelta 0, offsetDelta i, null key: what record i of an unkeyed batch with
#: one timestamp starts with.
_NO_KEY_PREFIXES = [b"\x00\x00" + SMALL[i] + _NULL for i in range(_SMALL_LIMIT)]


class Record(NamedTuple):
    """One decoded record with its absolute offset and timestamp (ms since the epoch)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


def _varint(n: int) -> bytes:
    return SMALL[n] if 0 <= n < _SMALL_LIMIT else encode_varint(n)


def _encode_headers(headers: Sequence[Header]) -> bytes:
    parts = [_varint(len(headers))]
    for hkey, hvalue in headers:
        raw_key = hkey.encode()
        parts.append(_varint(len(raw_key)))
        parts.append(raw_key)
        if hvalue is None:
            parts.append(_NULL)
        else:
            parts.append(_varint(len(hvalue)))
            parts.append(hvalue)
    return b"".join(parts)


def encode_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Sequence[Header]] | None = None,
    timestamps: Sequence[int] | None = None,
    timestamp: int | None = None,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    compression: Compression = Compression.NONE,
    attributes: int = 0,
) -> bytes:
    """Build one RecordBatch v2 from columns: `values[i]` with `keys[i]`, `headers[i]`, `timestamps[i]`.

    Records without their own timestamp get `timestamp` (default: now). `attributes` may add the
    timestamp-type, transactional and control bits; the codec bits come from `compression`.
    """
    count = len(values)
    if count == 0:
        raise ValueError("a record batch holds at least one record")
    if keys is not None and len(keys) != count:
        raise ValueError("keys and values differ in length")
    if headers is not None and len(headers) != count:
        raise ValueError("headers and values differ in length")
    if timestamps is not None and len(timestamps) != count:
        raise ValueError("timestamps and values differ in length")

    if timestamps is None:
        base_timestamp = max_timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    else:
        base_timestamp = timestamps[0]
        max_timestamp = max(timestamps)

    small = SMALL
    null = _NULL
    parts: list[bytes] = []
    append = parts.append
    if keys is None and headers is None and timestamps is None and count <= _SMALL_LIMIT:
        # The common case, kept short: no keys, no headers, one timestamp.
        extend = parts.extend
        prefixes = _NO_KEY_PREFIXES
        for i, value in enumerate(values):
            prefix = prefixes[i]
            if value is None:
                extend((small[len(prefix) + 2], prefix, b"\x01\x00"))
                continue
            n = len(value)
            value_len = small[n] if n < _SMALL_LIMIT else encode_varint(n)
            size = len(prefix) + len(value_len) + n + 1
            extend(
                (
                    small[size] if size < _SMALL_LIMIT else encode_varint(size),
                    prefix,
                    value_len,
                    value,
                    b"\x00",
                )
            )
    for i in range(count if not parts else 0):
        value = values[i]
        key = keys[i] if keys is not None else None
        delta = timestamps[i] - base_timestamp if timestamps is not None else 0
        # attributes (always 0) + timestampDelta + offsetDelta
        prefix = (
            b"\x00"
            + (small[delta] if 0 <= delta < _SMALL_LIMIT else encode_varint(delta))
            + (small[i] if i < _SMALL_LIMIT else encode_varint(i))
        )
        size = len(prefix)
        if key is None:
            key_len = null
            size += 1
        else:
            n = len(key)
            key_len = small[n] if n < _SMALL_LIMIT else encode_varint(n)
            size += len(key_len) + n
        if value is None:
            value_len = null
            size += 1
        else:
            n = len(value)
            value_len = small[n] if n < _SMALL_LIMIT else encode_varint(n)
            size += len(value_len) + n
        if headers is not None and headers[i]:
            header_bytes = _encode_headers(headers[i])
        else:
            header_bytes = b"\x00"
        size += len(header_bytes)
        append(small[size] if size < _SMALL_LIMIT else encode_varint(size))
        append(prefix)
        append(key_len)
        if key is not None:
            append(key)
        append(value_len)
        if value is not None:
            append(value)
        append(header_bytes)

    body = b"".join(parts)
    codec = Compression(compression)
    if codec != Compression.NONE:
        body = compress(codec, body)
    attrs = (attributes & ~ATTR_CODEC_MASK) | codec
    head = bytearray(
        HEADER.pack(
            base_offset,
            BATCH_OVERHEAD - LOG_OVERHEAD + len(body),
            partition_leader_epoch,
            2,
            0,
            attrs,
            count - 1,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    )
    crc = crc32c(body, crc32c(memoryview(head)[CRC_START:]))
    head[17:21] = crc.to_bytes(4, "big")
    return bytes(head) + body


def decode_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    check_crc: bool = True,
) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at `buf[pos]`: its header and its records, with absolute offsets."""
    return decode_batch_as(buf, pos, Record, max_decompressed=max_decompressed, check_crc=check_crc)


def decode_batch_as(
    buf: bytes | bytearray | memoryview,
    pos: int,
    make: Callable[[int, int, bytes | None, bytes | None, tuple[Header, ...]], T],
    *,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    check_crc: bool = True,
) -> tuple[BatchHeader, list[T]]:
    """`decode_batch`, building each record with `make(offset, timestamp, key, value, headers)`
    (a consumer builds its message objects directly, with no `Record` in between)."""
    header = parse_header(buf, pos)
    end = pos + header.size
    if end > len(buf):
        raise CorruptRecordError(
            f"batch at byte {pos} claims {header.size} bytes but only {len(buf) - pos} are there"
        )
    with memoryview(buf) as view:
        if check_crc and crc32c(view[pos + CRC_START : end]) != header.crc:
            raise CorruptRecordError(f"batch at byte {pos} fails its CRC")
        body = view[pos + BATCH_OVERHEAD : end].tobytes()
    if header.compression:
        body = decompress(header.compression, body, max_decompressed)
    return header, _decode_records(body, header, make)


def iter_batches(buf: bytes | bytearray | memoryview) -> Iterator[BatchHeader]:
    """Headers of the whole batches in `buf`, in order; a partial batch at the end is ignored.

    Only the header of each batch is checked (magic, length), not its CRC.
    """
    pos = 0
    end = len(buf)
    while end - pos >= BATCH_OVERHEAD:
        header = parse_header(buf, pos)
        if pos + header.size > end:
            return
        yield header
        pos += header.size


def iter_records(
    buf: bytes | bytearray | memoryview, *, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
) -> Iterator[Record]:
    """Records of the whole batches in `buf`, control batches skipped; a partial tail is ignored."""
    pos = 0
    for header in iter_batches(buf):
        if not header.is_control:
            yield from decode_batch(buf, pos, max_decompressed=max_decompressed)[1]
        pos += header.size


def _decode_records(
    body: bytes,
    header: BatchHeader,
    make: Callable[[int, int, bytes | None, bytes | None, tuple[Header, ...]], T],
) -> list[T]:
    count = header.records_count
    if count < 0:
        raise CorruptRecordError(f"batch claims {count} records")
    end = len(body)
    # Every record takes at least 7 bytes, so a count beyond that is a lie (and no list is
    # allocated from it).
    if count * 7 > end:
        raise CorruptRecordError(f"batch claims {count} records in {end} bytes")
    base_offset = header.base_offset
    base_timestamp = header.base_timestamp
    records: list[T] = []
    append = records.append
    pos = 0
    # Varints of one or two bytes (values -8192..8191) are decoded inline: record lengths, deltas
    # and key and value lengths of ordinary records all are. Longer ones take decode_varint.
    try:
        for _ in range(count):
            b = body[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                u = (b & 0x7F) | (body[pos + 1] << 7)
                length = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                length, pos = decode_varint(body, pos, 5)
            record_end = pos + length
            if length < 6 or record_end > end:
                raise CorruptRecordError(f"record of {length} bytes at byte {pos} does not fit its batch")
            pos += 1  # attributes
            b = body[pos]
            if b < 0x80:
                ts_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                u = (b & 0x7F) | (body[pos + 1] << 7)
                ts_delta = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                ts_delta, pos = decode_varint(body, pos, 10)
            b = body[pos]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                u = (b & 0x7F) | (body[pos + 1] << 7)
                offset_delta = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                offset_delta, pos = decode_varint(body, pos, 5)
            b = body[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                u = (b & 0x7F) | (body[pos + 1] << 7)
                n = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                n, pos = decode_varint(body, pos, 5)
            if n < 0:
                if n != -1:
                    raise CorruptRecordError(f"key length {n} at byte {pos}")
                key = None
            else:
                if pos + n > record_end:
                    raise CorruptRecordError(f"key of {n} bytes at byte {pos} overruns its record")
                key = body[pos : pos + n]
                pos += n
            b = body[pos]
            if b < 0x80:
                n = (b >> 1) ^ -(b & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                u = (b & 0x7F) | (body[pos + 1] << 7)
                n = (u >> 1) ^ -(u & 1)
                pos += 2
            else:
                n, pos = decode_varint(body, pos, 5)
            if n < 0:
                if n != -1:
                    raise CorruptRecordError(f"value length {n} at byte {pos}")
                value = None
            else:
                if pos + n > record_end:
                    raise CorruptRecordError(f"value of {n} bytes at byte {pos} overruns its record")
                value = body[pos : pos + n]
                pos += n
            if body[pos] == 0:
                pos += 1
                headers: tuple[Header, ...] = ()
            else:
                headers, pos = _decode_headers(body, pos, record_end)
            if pos != record_end:
                raise CorruptRecordError(f"record ends at byte {pos} but its length says {record_end}")
            append(make(base_offset + offset_delta, base_timestamp + ts_delta, key, value, headers))
    except IndexError:
        raise CorruptRecordError("a record runs past the end of its batch") from None
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes follow the last of {count} records")
    return records


def _decode_headers(body: bytes, pos: int, record_end: int) -> tuple[tuple[Header, ...], int]:
    count, pos = decode_varint(body, pos, 5)
    if count < 0 or count > record_end - pos:
        raise CorruptRecordError(f"record claims {count} headers")
    headers = []
    for _ in range(count):
        n, pos = decode_varint(body, pos, 5)
        if n < 0 or pos + n > record_end:
            raise CorruptRecordError(f"header key of {n} bytes at byte {pos} overruns its record")
        hkey = body[pos : pos + n].decode("utf-8", "replace")
        pos += n
        n, pos = decode_varint(body, pos, 5)
        hvalue: bytes | None
        if n < 0:
            if n != -1:
                raise CorruptRecordError(f"header value length {n} at byte {pos}")
            hvalue = None
        else:
            if pos + n > record_end:
                raise CorruptRecordError(f"header value of {n} bytes at byte {pos} overruns its record")
            hvalue = body[pos : pos + n]
            pos += n
        headers.append((hkey, hvalue))
    return tuple(headers), pos

"""Zigzag variable-length integers, as Kafka records use them.

A signed value n is first zigzag-mapped to an unsigned one (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...),
then written in groups of 7 bits, least significant first, the high bit of each byte meaning "more
bytes follow". A varint (int32) takes at most 5 bytes, a varlong (int64) at most 10.

    0 -> 00    -1 -> 01    1 -> 02    63 -> 7e    -64 -> 7f    64 -> 80 01    300 -> d8 04

Encoding of small values comes from a precomputed table: per-record encoding cost is what decides
client throughput in Python, and most lengths and deltas in a batch are small.
"""

from __future__ import annotations

from logbroker.errors import CorruptRecordError

__all__ = ["SMALL", "decode_varint", "encode_varint", "size_of_varint"]

_SMALL_LIMIT = 1 << 14


def _encode_unsigned(u: int) -> bytes:
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


#: SMALL[n] is the encoding of n for 0 <= n < 16384; SMALL[-1] (the last entry) encodes -1, the
#: length Kafka writes for a null key or value.
SMALL: list[bytes] = [_encode_unsigned(n << 1) for n in range(_SMALL_LIMIT)] + [b"\x01"]


def encode_varint(n: int) -> bytes:
    """Zigzag varint (or varlong) encoding of `n`, for -2**63 <= n < 2**63."""
    if 0 <= n < _SMALL_LIMIT:
        return SMALL[n]
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"{n} does not fit in a varlong")
    return _encode_unsigned(_zigzag(n) & 0xFFFFFFFFFFFFFFFF)


def size_of_varint(n: int) -> int:
    """Number of bytes `encode_varint(n)` takes."""
    u = _zigzag(n) & 0xFFFFFFFFFFFFFFFF
    size = 1
    while u >= 0x80:
        u >>= 7
        size += 1
    return size


def decode_varint(buf: bytes, pos: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode one zigzag varint at `buf[pos]`; return (value, position after it).

    Raises `CorruptRecordError` when the buffer ends inside the number or the number is longer
    than `max_bytes` (5 for int32 fields, 10 for int64 ones).
    """
    end = len(buf)
    if pos >= end:
        raise CorruptRecordError(f"varint at byte {pos} runs past the end of the data")
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    result = b & 0x7F
    shift = 7
    start = pos
    pos += 1
    while True:
        if pos >= end:
            raise CorruptRecordError(f"varint at byte {start} runs past the end of the data")
        if pos - start >= max_bytes:
            raise CorruptRecordError(f"varint at byte {start} is longer than {max_bytes} bytes")
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7

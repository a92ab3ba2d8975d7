"""The Kafka protocol's primitive types, read from and written to bytes (no I/O).

    type             non-flexible encoding                flexible (compact) encoding
    ---------------  -----------------------------------  -------------------------------------
    int8..int64      big-endian two's complement          same
    uint16           big-endian                           same
    float64          IEEE 754 big-endian                  same
    bool             1 byte, 0 or 1                       same
    uuid             16 bytes                             same
    string           int16 length + UTF-8 (-1: null)      uvarint (length + 1) + UTF-8 (0: null)
    bytes, records   int32 length + bytes (-1: null)      uvarint (length + 1) + bytes (0: null)
    array            int32 count + items (-1: null)       uvarint (count + 1) + items (0: null)
    tagged fields    -                                    uvarint count, then per tag (ascending)
                                                          uvarint tag, uvarint size, value

The unsigned varint of flexible versions is base-128, little-endian groups, high bit set on all
but the last byte, and no zigzag (unlike the varints inside record batches).

Every length is checked against the bytes that remain before anything is allocated, so a lying
length costs nothing; reading past the end raises `KafkaDecodeError`.
"""

from __future__ import annotations

import struct

from logbroker.errors import ProtocolError

__all__ = ["Buffer", "KafkaDecodeError", "Reader", "Writer"]

Buffer = bytes | bytearray | memoryview

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


class KafkaDecodeError(ProtocolError):
    """Bytes that are not a valid encoding of what was expected."""


class Reader:
    """Reads primitives from a buffer, front to back."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = memoryview(buf) if not isinstance(buf, memoryview) else buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise KafkaDecodeError(f"the data ends {pos + n - self.end} byte(s) short (need {n} at {pos})")
        self.pos = pos + n
        return pos

    def int8(self) -> int:
        return _I8.unpack_from(self.buf, self._need(1))[0]  # type: ignore[no-any-return]

    def int16(self) -> int:
        return _I16.unpack_from(self.buf, self._need(2))[0]  # type: ignore[no-any-return]

    def uint16(self) -> int:
        return _U16.unpack_from(self.buf, self._need(2))[0]  # type: ignore[no-any-return]

    def int32(self) -> int:
        return _I32.unpack_from(self.buf, self._need(4))[0]  # type: ignore[no-any-return]

    def int64(self) -> int:
        return _I64.unpack_from(self.buf, self._need(8))[0]  # type: ignore[no-any-return]

    def float64(self) -> float:
        return _F64.unpack_from(self.buf, self._need(8))[0]  # type: ignore[no-any-return]

    def boolean(self) -> bool:
        return self.buf[self._need(1)] != 0  # any byte but 0 is true, as Kafka reads it

    def uuid(self) -> bytes:
        pos = self._need(16)
        return bytes(self.buf[pos : pos + 16])

    def uvarint(self) -> int:
        result = 0
        shift = 0
        buf = self.buf
        while True:
            if self.pos >= self.end:
                raise KafkaDecodeError("the data ends inside an unsigned varint")
            byte = buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 28:
                raise KafkaDecodeError("an unsigned varint longer than 5 bytes")

    def raw(self, n: int) -> memoryview:
        pos = self._need(n)
        return self.buf[pos : pos + n]

    # -- lengths -------------------------------------------------------------------------------

    def length(self, compact: bool, width: int) -> int:
        """A length or count: -1 for null. `width` is 2 or 4 for the non-compact prefix."""
        if compact:
            return self.uvarint() - 1
        return self.int16() if width == 2 else self.int32()

    def string(self, compact: bool) -> str | None:
        n = self.length(compact, 2)
        if n < 0:
            return None
        try:
            return str(self.raw(n), "utf-8")
        except UnicodeDecodeError:
            raise KafkaDecodeError("a string that is not valid UTF-8") from None

    def bytes_(self, compact: bool) -> memoryview | None:
        n = self.length(compact, 4)
        if n < 0:
            return None
        return self.raw(n)

    def count(self, compact: bool) -> int:
        """An array's item count (-1: null), no more than the bytes that remain."""
        n = self.length(compact, 4)
        if n > self.remaining:
            raise KafkaDecodeError(f"an array of {n} items in {self.remaining} bytes")
        return n


class Writer:
    """Appends primitives; large byte fields (records) are kept as parts, not copied."""

    __slots__ = ("buf", "parts", "size")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.parts: list[Buffer] = []
        self.size = 0  # bytes in `parts`

    def int8(self, value: int) -> None:
        self.buf += _I8.pack(value)

    def int16(self, value: int) -> None:
        self.buf += _I16.pack(value)

    def uint16(self, value: int) -> None:
        self.buf += _U16.pack(value)

    def int32(self, value: int) -> None:
        self.buf += _I32.pack(value)

    def int64(self, value: int) -> None:
        self.buf += _I64.pack(value)

    def float64(self, value: float) -> None:
        self.buf += _F64.pack(value)

    def boolean(self, value: bool) -> None:
        self.buf.append(1 if value else 0)

    def uuid(self, value: bytes | None) -> None:
        value = value or bytes(16)
        if len(value) != 16:
            raise ValueError("a uuid is 16 bytes")
        self.buf += value

    def uvarint(self, value: int) -> None:
        if value < 0:
            raise ValueError("an unsigned varint must not be negative")
        buf = self.buf
        while value > 0x7F:
            buf.append((value & 0x7F) | 0x80)
            value >>= 7
        buf.append(value)

    def length(self, n: int, compact: bool, width: int) -> None:
        if compact:
            self.uvarint(n + 1)
        elif width == 2:
            self.int16(n)
        else:
            self.int32(n)

    def string(self, value: str | None, compact: bool) -> None:
        if value is None:
            self.length(-1, compact, 2)
            return
        data = value.encode()
        self.length(len(data), compact, 2)
        self.buf += data

    def bytes_(self, value: bytes | bytearray | memoryview | None, compact: bool) -> None:
        if value is None:
            self.length(-1, compact, 4)
            return
        self.length(len(value), compact, 4)
        if len(value) > 4096:
            self.parts.append(self.buf)
            self.size += len(self.buf)
            self.buf = bytearray()
            self.parts.append(value)
            self.size += len(value)
        else:
            self.buf += value

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        self.buf += data

    def __len__(self) -> int:
        return self.size + len(self.buf)

    def getbuffers(self) -> list[Buffer]:
        """What was written, as buffers to send back to back (the large byte fields uncopied);
        the first is a bytearray of the writer's, so a length may be stamped into it."""
        return [*self.parts, self.buf] if self.parts else [self.buf]

    def getvalue(self) -> bytes:
        if not self.parts:
            return bytes(self.buf)
        return b"".join([*self.parts, self.buf])

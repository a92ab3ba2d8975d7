"""Frames of the native protocol: the bytes on the wire, and the buffer that cuts them out.

    offset  width  field
    ------  -----  -------------------------------------------------------------------------
       0      4    length          uint32  bytes after this field (at least 11)
       4      1    kind            uint8   1 request, 2 response
       5      4    correlation id  uint32  chosen by the client, echoed by the response
       9      2    api key         uint16  which request (see `messages.py`)
      11      4    header length   uint32  at most length - 11
      15      h    header                  UTF-8 JSON object: the message's fields
    15+h      ...  payload                 the rest of the frame: record batch bytes, opaque

All integers are big-endian. The length prefix is checked against the limit before a byte of
the frame is buffered beyond the prefix, so a lying length costs nothing.
"""

from __future__ import annotations

import struct

import attrs

from logbroker.errors import FrameTooLargeError, ProtocolError

__all__ = ["PREFIX", "REQUEST", "RESPONSE", "Frame", "FrameBuffer", "encode_frame"]

PREFIX = struct.Struct(">IBIHI")  # length, kind, correlation id, api key, header length
_FIXED = PREFIX.size - 4  # bytes counted by `length` before the header
REQUEST = 1
RESPONSE = 2
MAX_HEADER = 1 << 20


@attrs.frozen
class Frame:
    kind: int
    correlation_id: int
    api_key: int
    header: bytes
    payload: bytes


def encode_frame(kind: int, correlation_id: int, api_key: int, header: bytes, payload: bytes = b"") -> bytes:
    length = _FIXED + len(header) + len(payload)
    return PREFIX.pack(length, kind, correlation_id, api_key, len(header)) + header + payload


class FrameBuffer:
    """Bytes in, whole frames out. Raises only `ProtocolError`s."""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if self._closed and data:
            raise ProtocolError("data received after the end of the stream")
        if not data:
            self._closed = True
        self._buffer += data

    @property
    def at_eof(self) -> bool:
        return self._closed

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes arrive."""
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack_from(">I", buffer)
        if length > self.max_frame_size:
            raise FrameTooLargeError(f"frame of {length} bytes announced; the limit is {self.max_frame_size}")
        if length < _FIXED:
            raise ProtocolError(f"frame of {length} bytes is shorter than a frame header")
        if len(buffer) < 4 + length:
            return None
        _, kind, correlation_id, api_key, header_length = PREFIX.unpack_from(buffer)
        if kind not in (REQUEST, RESPONSE):
            raise ProtocolError(f"unknown frame kind {kind}")
        if header_length > length - _FIXED or header_length > MAX_HEADER:
            raise ProtocolError(f"header of {header_length} bytes does not fit a frame of {length}")
        start = PREFIX.size
        header = bytes(buffer[start : start + header_length])
        payload = bytes(buffer[start + header_length : 4 + length])
        del buffer[: 4 + length]
        return Frame(kind, correlation_id, api_key, header, payload)

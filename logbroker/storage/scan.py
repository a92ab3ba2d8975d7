"""Walking the batches of a segment file: the one loop recovery, verify and dump share.

`BatchScanner` reads a `.log` file in large chunks and yields `(position, header)` for each
consecutive batch, checking as it goes that

- the 61-byte header and the whole batch fit in the file (else: "torn");
- the magic byte is 2 and the length is at least a header's (else: "corrupt");
- the CRC-32C matches, when asked (else: "corrupt");
- the batch starts at the offset its predecessor ends at, when an expected offset is given
  (else: "gap").

It stops at the first problem and leaves it in `problem`, with the byte position and the offset at
which valid data ends. It never allocates more than a chunk plus one header: the CRC of a batch
larger than a chunk is computed piece by piece, so a garbage length cannot make it allocate.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import attrs
from crc32c import crc32c

from logbroker.records.batch import BATCH_OVERHEAD, CRC_START, HEADER, LOG_OVERHEAD, MAGIC, BatchHeader

__all__ = ["BatchScanner", "ScanProblem"]

CHUNK = 1 << 20

ReadAt = Callable[[int, int], "bytes | memoryview"]


@attrs.frozen
class ScanProblem:
    """Where and why valid data ends."""

    kind: str  # "torn", "corrupt" or "gap"
    position: int
    offset: int | None  # the offset the damaged batch should have held; None when unknown
    reason: str


class BatchScanner:
    """Iterate over the batches of `size` bytes reachable through `read_at(position, size)`."""

    def __init__(
        self,
        read_at: ReadAt,
        size: int,
        *,
        position: int = 0,
        expected_offset: int | None = None,
        check_crc: bool = True,
        allow_legacy: bool = False,
        chunk: int = CHUNK,
    ) -> None:
        self._read_at = read_at
        self._chunk = max(chunk, BATCH_OVERHEAD)
        self.size = size
        self.position = position
        self.next_offset = expected_offset
        self.check_crc = check_crc
        self.allow_legacy = allow_legacy
        self.batches = 0
        self.problem: ScanProblem | None = None

    def __iter__(self) -> Iterator[tuple[int, BatchHeader]]:
        size = self.size
        buf: bytes | memoryview = b""
        buf_start = self.position
        while self.position < size:
            pos = self.position
            rel = pos - buf_start
            if rel + BATCH_OVERHEAD > len(buf):
                buf = self._read_at(pos, min(self._chunk, size - pos))
                buf_start, rel = pos, 0
            avail = len(buf) - rel
            if avail < LOG_OVERHEAD + 5:
                self._stop("torn", f"{size - pos} bytes at the end of the file are not a whole batch")
                return
            if avail < BATCH_OVERHEAD:
                # Fewer than 61 bytes left in the file: a header cut short, or a legacy message.
                base_offset, length = _PREFIX.unpack_from(buf, rel)
                magic = buf[rel + 16]
                if magic != MAGIC and self.allow_legacy and 0 <= length <= size - pos - LOG_OVERHEAD:
                    yield pos, _legacy_header(base_offset, length, magic)
                    self.position = pos + length + LOG_OVERHEAD
                    continue
                self._stop("torn", f"a batch header is cut short after {size - pos} bytes")
                return
            header = BatchHeader._make(HEADER.unpack_from(buf, rel))
            batch_size = header.batch_length + LOG_OVERHEAD
            if header.magic != MAGIC:
                if self.allow_legacy and header.batch_length >= 0 and batch_size <= size - pos:
                    yield pos, _legacy_header(header.base_offset, header.batch_length, header.magic)
                    self.position = pos + batch_size
                    continue
                self._stop("corrupt", f"magic byte is {header.magic}, not 2")
                return
            if header.batch_length < BATCH_OVERHEAD - LOG_OVERHEAD:
                self._stop("corrupt", f"length field {header.batch_length} is shorter than a header")
                return
            if batch_size > size - pos:
                self._stop("torn", f"batch of {batch_size} bytes runs past the end of the file")
                return
            if self.next_offset is not None and header.base_offset != self.next_offset:
                self._stop(
                    "gap",
                    f"batch holds offset {header.base_offset} where offset {self.next_offset} should follow",
                )
                return
            if self.check_crc:
                if rel + batch_size <= len(buf):
                    with memoryview(buf) as view:
                        crc = crc32c(view[rel + CRC_START : rel + batch_size])
                else:
                    crc = self._streamed_crc(pos, batch_size)
                if crc != header.crc:
                    self._stop("corrupt", f"CRC mismatch: stored {header.crc:#010x}, computed {crc:#010x}")
                    return
            yield pos, header
            self.batches += 1
            self.position = pos + batch_size
            self.next_offset = header.base_offset + header.last_offset_delta + 1

    def _streamed_crc(self, pos: int, batch_size: int) -> int:
        crc = 0
        at = pos + CRC_START
        end = pos + batch_size
        while at < end:
            piece = self._read_at(at, min(self._chunk, end - at))
            if not piece:
                break
            crc = crc32c(piece, crc)
            at += len(piece)
        return crc

    def _stop(self, kind: str, reason: str) -> None:
        self.problem = ScanProblem(kind, self.position, self.next_offset, reason)


_PREFIX = struct.Struct(">qi")


def _legacy_header(base_offset: int, length: int, magic: int) -> BatchHeader:
    """A stand-in header for a magic 0/1 message, which dump shows but does not decode."""
    return BatchHeader(base_offset, length, -1, magic, 0, 0, 0, -1, -1, -1, -1, -1, 0)

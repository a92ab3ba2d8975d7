"""`MemorySegment`: a segment held in a bytearray, for `--memory` brokers and tests.

Nothing survives the process; everything else behaves as a file segment does (the shared
conformance suite runs against both).
"""

from __future__ import annotations

from collections.abc import Sequence

from logbroker.storage.fs import Buffer
from logbroker.storage.segment import Segment

__all__ = ["MemorySegment"]


class MemorySegment(Segment):
    """Batches kept in memory."""

    def __init__(self, base_offset: int, index_interval_bytes: int, now_ms: int) -> None:
        super().__init__(base_offset, index_interval_bytes, now_ms)
        self._data = bytearray()

    @property
    def path(self) -> str:
        return f"<memory>/{self.base_offset:020d}.log"

    def _write(self, parts: Sequence[Buffer]) -> None:
        data = self._data
        for part in parts:
            data += part

    def _read_at(self, position: int, size: int) -> bytes:
        with memoryview(self._data) as view:
            return view[position : position + size].tobytes()

    def _truncate_bytes(self, size: int) -> None:
        del self._data[size:]

    def close(self) -> None:
        self._data = bytearray()

"""Fixtures of the storage tests: segment factories of both kinds, and a helper to append."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logbroker.records import stamp_base_offset, validate_batch
from logbroker.storage.file_segment import FileSegment
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.memory_segment import MemorySegment
from logbroker.storage.segment import BatchInfo, Segment

SegmentFactory = Callable[..., Segment]


@pytest.fixture(params=["memory", "file"])
def make_segment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SegmentFactory]:
    """Builds empty segments of one kind: memory, or a real file in a temp dir."""
    made: list[Segment] = []

    def make(base_offset: int = 0, index_interval_bytes: int = 4096, now_ms: int = 0) -> Segment:
        segment: Segment
        if request.param == "memory":
            segment = MemorySegment(base_offset, index_interval_bytes, now_ms)
        else:
            directory = tmp_path / f"segment-{len(made)}"
            directory.mkdir()
            segment = FileSegment.create(
                OsFileSystem(), str(directory), base_offset, index_interval_bytes, now_ms
            )
        made.append(segment)
        return segment

    yield make
    for segment in made:
        segment.close()


def append_batches(segment: Segment, batches: list[bytes], now_ms: int = 0) -> list[bytes]:
    """Stamp `batches` with the segment's next offsets and append them; return the stamped bytes."""
    stamped = []
    infos = []
    offset = segment.next_offset
    for data in batches:
        buf = bytearray(data)
        stamp_base_offset(buf, offset)
        header = validate_batch(buf)
        stamped.append(bytes(buf))
        infos.append(BatchInfo(offset, header.next_offset, header.max_timestamp, header.size))
        offset = header.next_offset
    segment.append(stamped, infos, now_ms)
    return stamped

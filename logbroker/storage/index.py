"""The sparse offset index and the time index of one segment.

Both live in memory while the segment is open and are written beside the log, in Kafka's formats,
when the segment is sealed (rolled or closed cleanly). They are derived data: never trusted
without a check, always rebuildable from the log by a scan.

`.index` (8 bytes an entry, big-endian):

    offset  width  field
       0      4    relative offset  int32  base offset of the batch - segment base offset
       4      4    position         int32  byte position of that batch in the .log file

`.timeindex` (12 bytes an entry, big-endian):

    offset  width  field
       0      8    timestamp        int64  largest record timestamp up to and including ...
       8      4    relative offset  int32  ... this offset (every record at or below it is no newer)

An offset entry is added for the first batch and then for the first batch that starts at least
`interval_bytes` after the previous entry, so a lookup scans at most about `interval_bytes` of
headers. A time entry is added at the same moments when the largest timestamp has grown, and once
more when the segment is sealed. Kafka's entries name a batch's last offset where ours name its
base offset; either reads correctly with the same lookup (largest entry at or below the target,
then scan forward).
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right

__all__ = ["IndexFileError", "SegmentIndex"]

_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
NO_TIMESTAMP = -1


class IndexFileError(ValueError):
    """An index file failed its checks; the caller rebuilds it from the log."""


class SegmentIndex:
    """Sparse offset -> position map and timestamp -> offset map of one segment."""

    __slots__ = (
        "_bytes_since_entry",
        "_interval",
        "_last_offset",
        "base_offset",
        "max_timestamp",
        "offsets",
        "positions",
        "time_offsets",
        "timestamps",
    )

    def __init__(self, base_offset: int, interval_bytes: int) -> None:
        self.base_offset = base_offset
        self._interval = interval_bytes
        self.offsets = array("q")
        self.positions = array("q")
        self.timestamps = array("q")
        self.time_offsets = array("q")
        self.max_timestamp = NO_TIMESTAMP
        self._last_offset = base_offset - 1
        self._bytes_since_entry = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def track(self, position: int, base_offset: int, last_offset: int, max_timestamp: int, size: int) -> None:
        """Account for one batch appended at `position`."""
        if not self.positions or self._bytes_since_entry >= self._interval:
            self.offsets.append(base_offset)
            self.positions.append(position)
            self._bytes_since_entry = 0
            self._add_time_entry()
        self._bytes_since_entry += size
        self._last_offset = last_offset
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp

    def observe(self, last_offset: int, max_timestamp: int) -> None:
        """Account for a batch already covered by loaded entries (no new entry is added)."""
        self._last_offset = last_offset
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp

    def seal(self) -> None:
        """Record the final largest timestamp, as a segment that stops growing must."""
        self._add_time_entry()

    def _add_time_entry(self) -> None:
        if self.max_timestamp != NO_TIMESTAMP and (
            not self.timestamps or self.max_timestamp > self.timestamps[-1]
        ):
            self.timestamps.append(self.max_timestamp)
            self.time_offsets.append(self._last_offset)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or below `offset`; (base, 0) if there is none."""
        i = bisect_right(self.offsets, offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.offsets[i], self.positions[i]

    def last_entry_within(self, position_limit: int, offset_limit: int) -> tuple[int, int] | None:
        """The last entry with position <= `position_limit` and offset < `offset_limit`."""
        i = min(bisect_right(self.positions, position_limit), bisect_left(self.offsets, offset_limit)) - 1
        if i < 0:
            return None
        return self.offsets[i], self.positions[i]

    def lookup_time(self, timestamp: int) -> int | None:
        """The offset of the last time entry older than `timestamp`, or None.

        Every record at or below the returned offset is older than `timestamp`, so a search for
        the first record at or after `timestamp` may start just past it.
        """
        i = bisect_left(self.timestamps, timestamp) - 1
        if i < 0:
            return None
        return self.time_offsets[i]

    # -- files ---------------------------------------------------------------------------------

    def to_files(self) -> tuple[bytes, bytes]:
        """The contents of the `.index` and `.timeindex` files."""
        base = self.base_offset
        index = bytearray()
        for offset, position in zip(self.offsets, self.positions, strict=True):
            index += _ENTRY.pack(offset - base, position)
        times = bytearray()
        for timestamp, offset in zip(self.timestamps, self.time_offsets, strict=True):
            times += _TIME_ENTRY.pack(timestamp, offset - base)
        return bytes(index), bytes(times)

    @classmethod
    def from_files(
        cls,
        base_offset: int,
        interval_bytes: int,
        index_data: bytes,
        time_data: bytes,
        *,
        segment_size: int,
        next_offset: int,
    ) -> SegmentIndex:
        """Load index files and check them against the segment they claim to describe.

        Raises `IndexFileError` for anything that does not describe a segment of `segment_size`
        bytes holding offsets base_offset .. next_offset - 1. Entries the last one leaves out
        (batches after it) are for the caller to walk.
        """
        if len(index_data) % _ENTRY.size or len(time_data) % _TIME_ENTRY.size:
            raise IndexFileError("index file length is not a whole number of entries")
        index = cls(base_offset, interval_bytes)
        previous_offset = previous_position = -1
        for relative, position in _ENTRY.iter_unpack(index_data):
            offset = base_offset + relative
            if (
                offset <= previous_offset
                or position <= previous_position
                or offset >= next_offset
                or position >= segment_size
            ):
                raise IndexFileError(f"offset index entry ({relative}, {position}) is out of order or range")
            index.offsets.append(offset)
            index.positions.append(position)
            previous_offset, previous_position = offset, position
        if segment_size and (
            not index.positions or index.positions[0] != 0 or index.offsets[0] != base_offset
        ):
            raise IndexFileError("offset index does not start at the first batch")
        previous_timestamp = NO_TIMESTAMP
        previous_offset = base_offset - 1
        for timestamp, relative in _TIME_ENTRY.iter_unpack(time_data):
            offset = base_offset + relative
            if timestamp <= previous_timestamp or offset < previous_offset or offset >= next_offset:
                raise IndexFileError(f"time index entry ({timestamp}, {relative}) is out of order or range")
            index.timestamps.append(timestamp)
            index.time_offsets.append(offset)
            previous_timestamp, previous_offset = timestamp, offset
        if index.timestamps:
            index.max_timestamp = index.timestamps[-1]
        index._last_offset = next_offset - 1
        if index.positions:
            index._bytes_since_entry = segment_size - index.positions[-1]
        return index

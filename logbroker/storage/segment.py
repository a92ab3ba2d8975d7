"""The segment contract: a contiguous run of whole batches, and the logic both kinds share.

A segment holds the batches of offsets `base_offset` .. `next_offset - 1`, back to back, exactly
as a Kafka `.log` file does. The contract is small:

    append(parts, batches, now_ms)          write stamped batches at the end
    read(offset, max_bytes, end_offset)     whole batches from the one holding `offset`
    offset_for_timestamp(timestamp)         first offset whose record is at least that new
    batch_headers(offset)                   the headers of the batches from `offset` on
    truncate_to(offset)                     drop the batches from `offset` on
    seal() / close()                        stop growing / release resources
    base_offset, next_offset, size, max_timestamp, created_ms, modified_ms

`MemorySegment` and `FileSegment` supply four primitives (`_write`, `_read_at`, `_truncate_bytes`,
`_checked`); everything else, the sparse index included, is here once. Policy - when to roll,
what to delete - lives above, in `PartitionLog`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import attrs

from logbroker.errors import CorruptLogError, CorruptRecordError
from logbroker.records.batch import BatchHeader
from logbroker.records.codec import decode_batch
from logbroker.storage.fs import Buffer
from logbroker.storage.index import NO_TIMESTAMP, SegmentIndex
from logbroker.storage.scan import BatchScanner

__all__ = ["BatchInfo", "Damage", "Segment"]

# Reads walk batch headers in chunks of this size: an index entry is at most about
# index.interval.bytes before the batch a read starts with.
_WALK_CHUNK = 64 * 1024


class BatchInfo(NamedTuple):
    """What a segment needs to know of a batch it appends (the bytes come separately)."""

    base_offset: int
    next_offset: int
    max_timestamp: int
    size: int


@attrs.frozen
class Damage:
    """Stored bytes that failed their checks: valid data of the segment ends at `offset`."""

    position: int
    offset: int
    reason: str


class DamageError(Exception):
    """Raised inside a segment when a walk hits damaged bytes."""

    def __init__(self, damage: Damage) -> None:
        super().__init__(damage.reason)
        self.damage = damage


class Segment(abc.ABC):
    """A contiguous run of batches starting at `base_offset`."""

    def __init__(self, base_offset: int, index_interval_bytes: int, now_ms: int) -> None:
        self.base_offset = base_offset
        self._index_interval = index_interval_bytes
        self._index = SegmentIndex(base_offset, index_interval_bytes)
        self._next_offset = base_offset
        self._size = 0
        #: Broker time of the first append (what `segment.ms` counts from).
        self.created_ms = now_ms
        #: Broker time of the last append (what `retention.ms` counts from).
        self.modified_ms = now_ms
        #: The first damaged batch found, if any; reads at and past its offset are refused.
        self.damage: Damage | None = None

    # -- what subclasses provide ---------------------------------------------------------------

    @property
    @abc.abstractmethod
    def path(self) -> str:
        """Where the segment lives, for messages: a file path, or a name for memory segments."""

    @abc.abstractmethod
    def _write(self, parts: Sequence[Buffer]) -> None:
        """Write the bytes at the end, all or nothing (raising a `StorageError`)."""

    @abc.abstractmethod
    def _read_at(self, position: int, size: int) -> bytes:
        """Up to `size` stored bytes from `position`."""

    @abc.abstractmethod
    def _truncate_bytes(self, size: int) -> None: ...

    def _checked(self, data: bytes, position: int, first_offset: int) -> bytes:
        """Check bytes about to be served; return the prefix that is intact.

        Memory segments hold only what `append` validated, so they serve their bytes as they are.
        """
        return data

    def seal(self) -> None:
        """The segment stops growing: record its final largest timestamp."""
        self._index.seal()

    def close(self) -> None:  # noqa: B027 - a memory segment has nothing to release
        """Release what the segment holds open."""

    # -- the contract --------------------------------------------------------------------------

    @property
    def next_offset(self) -> int:
        return self._next_offset

    @property
    def size(self) -> int:
        return self._size

    @property
    def max_timestamp(self) -> int:
        """The largest record timestamp in the segment, -1 if it has none."""
        return self._index.max_timestamp

    def append(self, parts: Sequence[Buffer], batches: Sequence[BatchInfo], now_ms: int) -> None:
        """Append whole batches whose base offsets are already stamped in `parts`.

        `batches` describes them in order; the first must start at `next_offset`.
        """
        if batches[0].base_offset != self._next_offset:
            raise ValueError(f"batch at offset {batches[0].base_offset} does not follow {self._next_offset}")
        self._write(parts)
        position = self._size
        if position == 0:
            self.created_ms = now_ms
        for batch in batches:
            self._index.track(
                position, batch.base_offset, batch.next_offset - 1, batch.max_timestamp, batch.size
            )
            position += batch.size
        self._size = position
        self._next_offset = batches[-1].next_offset
        self.modified_ms = now_ms

    def read(
        self, offset: int, max_bytes: int, end_offset: int | None = None, *, min_one: bool = True
    ) -> tuple[bytes, int]:
        """Whole batches from the one holding `offset`, and the offset that follows them.

        At most `max_bytes`, unless `min_one` and the first batch is larger: it is then returned
        whole, so a reader always moves on. No batch at or past `end_offset` is returned.
        """
        stop = self._next_offset if end_offset is None else min(end_offset, self._next_offset)
        offset = max(offset, self.base_offset)
        if offset >= stop:
            return b"", offset
        self._refuse_damaged(offset)
        try:
            start, first = self._find(offset)
        except DamageError as found:
            self._note_damage(found.damage)
            damage = found.damage
            raise CorruptLogError(self.path, damage.position, damage.offset, damage.reason) from None
        if first.size > max_bytes and not min_one:
            return b"", first.base_offset
        end, next_offset = start + first.size, first.next_offset
        limit = start + max_bytes
        if end < limit and next_offset < stop:
            end, next_offset = self._extend(end, next_offset, limit, stop)
        data = self._read_at(start, end - start)
        checked = self._checked(data, start, first.base_offset)
        if len(checked) < len(data) and self.damage is not None:
            if not checked:  # the first batch itself is damaged
                damage = self.damage
                raise CorruptLogError(self.path, damage.position, damage.offset, damage.reason)
            next_offset = self.damage.offset
        return checked, next_offset

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose record timestamp is at least `timestamp`, or None."""
        if self._index.max_timestamp == NO_TIMESTAMP or self._index.max_timestamp < timestamp:
            return None
        for attempt in range(2):
            older = self._index.lookup_time(timestamp)
            first_candidate = self.base_offset if older is None else older + 1
            entry_offset, entry_position = self._index.lookup(first_candidate)
            scanner = self._walk(entry_position, entry_offset)
            for position, header in scanner:
                if header.next_offset > first_candidate and header.max_timestamp >= timestamp:
                    found = self._first_record_since(position, header, timestamp)
                    if found is not None:
                        return found
            if scanner.problem is None:
                return None
            if attempt == 0:
                self._repair_index()  # an index entry may have sent the walk astray
                continue
            self._note_damage(
                Damage(
                    scanner.problem.position, scanner.problem.offset or entry_offset, scanner.problem.reason
                )
            )
        return None

    def batch_headers(self, offset: int) -> Iterator[BatchHeader]:
        """The headers of the stored batches from the one holding `offset` to the segment's end.

        Records are not decoded nor CRCs computed: the walk reads the segment in chunks from the
        index entry below `offset` and jumps from header to header by the batches' lengths. Damage
        ends the walk (and is noted, as a read would note it).
        """
        offset = max(offset, self.base_offset)
        if offset >= self._next_offset:
            return
        for attempt in range(2):
            entry_offset, entry_position = self._index.lookup(offset)
            scanner = self._walk(entry_position, entry_offset)
            yielded = False
            for _, header in scanner:
                if header.next_offset > offset:
                    yielded = True
                    yield header
            problem = scanner.problem
            if problem is None:
                return
            if attempt == 0 and entry_position > 0 and not yielded:
                self._repair_index()  # the entry the walk started from may be wrong
                continue
            self._note_damage(Damage(problem.position, problem.offset or offset, problem.reason))
            return

    def truncate_to(self, offset: int) -> None:
        """Drop every batch from `offset` on; `offset` must start a batch (or be past the end)."""
        if offset >= self._next_offset:
            return
        position = 0
        if offset > self.base_offset:
            entry_offset, entry_position = self._index.lookup(offset)
            for batch_position, header in self._walk(entry_position, entry_offset):
                if header.base_offset == offset:
                    position = batch_position
                    break
                if header.next_offset > offset:
                    raise ValueError(f"offset {offset} is inside the batch at {header.base_offset}")
            else:
                raise ValueError(f"offset {offset} is not the start of a batch in {self.path}")
        else:
            offset = self.base_offset
        self._truncate_bytes(position)
        self._size = position
        self._next_offset = offset
        if self.damage is not None and self.damage.position >= position:
            self.damage = None
        self.rebuild_index()

    # -- shared machinery ----------------------------------------------------------------------

    def rebuild_index(self, *, check_crc: bool = False) -> None:
        """Rebuild the index from the stored batches, which sets `next_offset` to where they end.

        If the batches are not intact the index covers those before the damage, `next_offset`
        is where they end, and `DamageError` is raised.
        """
        index, scanner = self._scan_index(check_crc)
        self._index = index
        self._next_offset = scanner.next_offset if scanner.next_offset is not None else self.base_offset
        if scanner.problem is not None:
            problem = scanner.problem
            raise DamageError(Damage(problem.position, self._next_offset, problem.reason))

    def _repair_index(self) -> None:
        """Replace an index that led a walk astray with one built from the batches themselves.

        Damage the scan finds is recorded (reads at and past it are refused); the segment's
        `next_offset` is left as it is.
        """
        index, scanner = self._scan_index(check_crc=False)
        self._index = index
        if scanner.problem is not None:
            problem = scanner.problem
            self._note_damage(
                Damage(problem.position, scanner.next_offset or self.base_offset, problem.reason)
            )

    def _scan_index(self, check_crc: bool) -> tuple[SegmentIndex, BatchScanner]:
        index = SegmentIndex(self.base_offset, self._index_interval)
        scanner = BatchScanner(
            self._read_at, self._size, expected_offset=self.base_offset, check_crc=check_crc
        )
        for position, header in scanner:
            index.track(position, header.base_offset, header.last_offset, header.max_timestamp, header.size)
        index.seal()
        return index, scanner

    def _walk(self, position: int, expected_offset: int) -> BatchScanner:
        return BatchScanner(
            self._read_at,
            self._size,
            position=position,
            expected_offset=expected_offset,
            check_crc=False,
            chunk=_WALK_CHUNK,
        )

    def _find(self, offset: int) -> tuple[int, BatchHeader]:
        """Position and header of the batch holding `offset`.

        The index is never trusted blindly: if the walk from an index entry does not reach the
        offset, the index is rebuilt from the batches and the walk tried again; only damage the
        full scan confirms is reported.
        """
        for attempt in range(2):
            entry_offset, entry_position = self._index.lookup(offset)
            scanner = self._walk(entry_position, entry_offset)
            for position, header in scanner:
                if header.next_offset > offset:
                    return position, header
            if attempt == 0 and entry_position > 0:
                self._repair_index()
                if self.damage is not None and offset >= self.damage.offset:
                    raise DamageError(self.damage)
                continue
            problem = scanner.problem
            if problem is None:
                raise DamageError(
                    Damage(scanner.position, scanner.next_offset or offset, "the segment ends early")
                )
            raise DamageError(Damage(problem.position, problem.offset or offset, problem.reason))
        raise AssertionError("unreachable")

    def _extend(self, end: int, next_offset: int, limit: int, stop: int) -> tuple[int, int]:
        """Move the end of a read past more whole batches while they fit under `limit`."""
        for attempt in range(2):
            entry = self._index.last_entry_within(limit, stop)
            position, expected = end, next_offset
            jumped = entry is not None and entry[1] > position
            if entry is not None and jumped:
                expected, position = entry
            scanner = self._walk(position, expected)
            for batch_position, header in scanner:
                if header.base_offset >= stop or batch_position + header.size > limit:
                    return batch_position, header.base_offset
            if scanner.problem is None:
                return scanner.position, scanner.next_offset or expected
            if attempt == 0 and jumped:
                self._repair_index()  # the entry the walk started from may be wrong
                if self.damage is not None:
                    stop = min(stop, self.damage.offset)
                continue
            problem = scanner.problem
            self._note_damage(Damage(problem.position, problem.offset or expected, problem.reason))
            return scanner.position, scanner.next_offset or expected
        raise AssertionError("unreachable")

    def _first_record_since(self, position: int, header: BatchHeader, timestamp: int) -> int | None:
        if header.log_append_time:
            return header.base_offset  # every record carries the batch's append time
        try:
            _, records = decode_batch(self._read_at(position, header.size))
        except CorruptRecordError as exc:
            self._note_damage(Damage(position, header.base_offset, str(exc)))
            return None
        for record in records:
            if record.timestamp >= timestamp:
                return record.offset
        return None

    def _note_damage(self, damage: Damage) -> None:
        if self.damage is None or damage.offset < self.damage.offset:
            self.damage = damage

    def _refuse_damaged(self, offset: int) -> None:
        if self.damage is not None and offset >= self.damage.offset:
            raise CorruptLogError(self.path, self.damage.position, self.damage.offset, self.damage.reason)

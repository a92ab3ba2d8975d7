"""`PartitionLog`: one partition's append-only log of record batches, in segments.

The log owns policy over the segment contract: it validates and stamps incoming batches, rolls the
active segment by size and age, deletes whole closed segments by retention, keeps the log start
offset (persisted, only ever moving forward) and tracks what has been made durable.

Flushing is split so a server can fsync off its event loop (group commit): `prepare_flush()`
captures the log end and a handle to fsync, `FlushJob.run()` does the fsync in any thread, and
`complete_flush(job)` (or `fail_flush`) records the outcome. Every append made before
`prepare_flush` is covered. A failed fsync makes the log read-only until it is reopened: the data
may or may not be on disk, and retrying the fsync can report success for data the kernel already
dropped (PostgreSQL's "fsyncgate"), so the log never acks it.

Time comes in as `now_ms` (wall-clock milliseconds of the broker); the log reads no clock itself.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Protocol

import attrs

from logbroker import failpoints
from logbroker.errors import CorruptLogError, LogReadOnlyError, OffsetOutOfRangeError, RecordListTooLargeError
from logbroker.records.batch import OFFSET, BatchHeader, validate_batches
from logbroker.storage.config import LogConfig
from logbroker.storage.fs import Buffer, FileHandle, FileSystem
from logbroker.storage.memory_segment import MemorySegment
from logbroker.storage.partition_dir import PartitionDirectory, RecoveryReport
from logbroker.storage.segment import BatchInfo, Damage, Segment

__all__ = ["FlushJob", "PartitionLog"]

_MAX_RELATIVE_OFFSET = (1 << 31) - 1


class _SegmentStore(Protocol):
    durable: bool
    config: LogConfig

    def new_segment(self, base_offset: int, now_ms: int) -> Segment: ...

    def delete_segments(self, segments: Sequence[Segment]) -> None: ...

    def save_log_start(self, offset: int) -> None: ...

    def flush_handles(self, active: Segment) -> list[FileHandle]: ...

    def close(self, active: Segment) -> None: ...


class _MemoryStore:
    durable = False

    def __init__(self, config: LogConfig) -> None:
        self.config = config

    def new_segment(self, base_offset: int, now_ms: int) -> Segment:
        return MemorySegment(base_offset, self.config.index_interval_bytes, now_ms)

    def delete_segments(self, segments: Sequence[Segment]) -> None:
        for segment in segments:
            segment.close()

    def save_log_start(self, offset: int) -> None:
        pass

    def flush_handles(self, active: Segment) -> list[FileHandle]:
        return []

    def close(self, active: Segment) -> None:
        active.seal()


@attrs.define
class FlushJob:
    """An fsync that covers every append up to `target_offset`; `run()` may run in any thread."""

    target_offset: int
    handles: list[FileHandle]

    def run(self) -> None:
        try:
            for handle in self.handles:
                handle.fsync()
        finally:
            for handle in self.handles:
                handle.close()


class PartitionLog:
    """An append-only log of record batches, in segments, in memory or in a directory."""

    def __init__(
        self,
        store: _SegmentStore,
        segments: list[Segment],
        log_start_offset: int,
        config: LogConfig,
        recovery: RecoveryReport | None = None,
    ) -> None:
        self._store = store
        self._segments = segments
        self._bases = [s.base_offset for s in segments]
        self._log_start = log_start_offset
        self._config = config
        #: What opening the directory found and did (None for memory logs).
        self.recovery = recovery
        self._flushed = segments[-1].next_offset
        self._read_only: str | None = None
        self._closed = False
        self._damaged: tuple[str, Damage] | None = None
        for segment in segments:
            self._note_damage(segment)

    @property
    def config(self) -> LogConfig:
        return self._config

    @config.setter
    def config(self, config: LogConfig) -> None:
        """New settings, in force from the next append (a topic's settings changed at runtime);
        segments made from now on use its index interval too."""
        self._config = config
        self._store.config = config

    @classmethod
    def open(
        cls, fs: FileSystem, directory: str, config: LogConfig | None = None, *, now_ms: int
    ) -> PartitionLog:
        """Open (or create) the log in `directory`, recovering it if it was not closed cleanly."""
        config = config or LogConfig()
        store = PartitionDirectory(fs, directory, config)
        segments, log_start, report = store.recover(now_ms)
        return cls(store, segments, log_start, config, report)

    @classmethod
    def in_memory(
        cls, config: LogConfig | None = None, *, now_ms: int = 0, base_offset: int = 0
    ) -> PartitionLog:
        """A log that lives in memory only: nothing survives the process."""
        config = config or LogConfig()
        store = _MemoryStore(config)
        return cls(store, [store.new_segment(base_offset, now_ms)], base_offset, config)

    # -- state -----------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        """The first offset the log serves."""
        return self._log_start

    @property
    def next_offset(self) -> int:
        """The log end offset: the offset the next record will get."""
        return self._segments[-1].next_offset

    @property
    def flushed_offset(self) -> int:
        """Everything below this offset is durable (for memory logs: everything appended)."""
        return self._flushed if self._store.durable else self.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def read_only_reason(self) -> str | None:
        """Why the log takes no more writes (a failed fsync or cleanup), or None."""
        return self._read_only

    @property
    def damage(self) -> CorruptLogError | None:
        """The first damaged stored batch known, as the error reads at and past it get."""
        if self._damaged is None:
            return None
        path, found = self._damaged
        return CorruptLogError(path, found.position, found.offset, found.reason)

    def _note_damage(self, segment: Segment) -> None:
        found = segment.damage
        if found is not None and (self._damaged is None or found.offset < self._damaged[1].offset):
            self._damaged = (segment.path, found)

    # -- writing -------------------------------------------------------------------------------

    def append(self, data: Buffer, now_ms: int, *, headers: Sequence[BatchHeader] | None = None) -> int:
        """Validate one or more whole batches, stamp their offsets, append them; return the first.

        `headers` are those `validate_batches(data)` returned, when the caller validated already.
        Raises `CorruptRecordError`/`InvalidRecordError` for bad batches (nothing is written),
        `StorageError` when the write fails (nothing is stored; retriable) and
        `LogReadOnlyError` once the log has stopped taking writes.
        """
        self._check_writable()
        with memoryview(data) as view:
            if headers is None:
                headers = validate_batches(view)
            total = len(view)
            if total > self.config.segment_bytes:
                raise RecordListTooLargeError(
                    f"{total} bytes of batches do not fit a segment of {self.config.segment_bytes} bytes"
                )
            count = sum(h.records_count for h in headers)
            self._maybe_roll(total, count, now_ms)
            offset = base_offset = self.next_offset
            parts: list[Buffer] = []
            batches: list[BatchInfo] = []
            position = 0
            for header in headers:
                end = position + header.size
                parts.append(OFFSET.pack(offset))
                parts.append(view[position + 8 : end])
                batches.append(
                    BatchInfo(offset, offset + header.records_count, header.max_timestamp, header.size)
                )
                offset += header.records_count
                position = end
            try:
                self._segments[-1].append(parts, batches, now_ms)
            except LogReadOnlyError as exc:
                self._read_only = exc.message
                raise
            finally:
                for part in parts:
                    if isinstance(part, memoryview):
                        part.release()
        failpoints.hit("append.after_write")
        return base_offset

    def _maybe_roll(self, incoming_bytes: int, incoming_records: int, now_ms: int) -> None:
        active = self._segments[-1]
        if active.size == 0:
            return
        if (
            active.size + incoming_bytes > self.config.segment_bytes
            or now_ms - active.created_ms > self.config.segment_ms
            or active.next_offset + incoming_records - active.base_offset > _MAX_RELATIVE_OFFSET
        ):
            self.roll(now_ms)

    def roll(self, now_ms: int) -> None:
        """Close the active segment (fsynced, indexes written) and start a new one.

        Does nothing while the active segment is empty.
        """
        self._check_writable()
        active = self._segments[-1]
        if active.size == 0:
            return
        try:
            active.seal()
            failpoints.hit("roll.after_seal")
            segment = self._store.new_segment(active.next_offset, now_ms)
            failpoints.hit("roll.after_new_segment")
        except LogReadOnlyError as exc:
            self._read_only = exc.message
            raise
        self._flushed = max(self._flushed, active.next_offset)
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    def roll_if_due(self, now_ms: int) -> bool:
        """Roll the active segment if it is older than `segment.ms`; True if it rolled."""
        active = self._segments[-1]
        if self._closed or self._read_only is not None:
            return False
        if active.size and now_ms - active.created_ms > self.config.segment_ms:
            self.roll(now_ms)
            return True
        return False

    def apply_retention(self, now_ms: int) -> int:
        """Delete the oldest closed segments that `retention.ms` or `retention.bytes` allow.

        Only whole closed segments go; if every segment including the active one is older than
        `retention.ms`, the active one is rolled first so it can go too. Returns how many
        segments were deleted.
        """
        if self._read_only is not None or self._closed:
            return 0
        config = self.config
        segments = self._segments
        expired = 0
        if config.retention_ms >= 0:
            while expired < len(segments) and now_ms - segments[expired].modified_ms > config.retention_ms:
                expired += 1
            if expired == len(segments) and segments[-1].size:
                self.roll(now_ms)
            expired = min(expired, len(segments) - 1)
        oversized = 0
        if config.retention_bytes >= 0:
            excess = self.size_bytes - config.retention_bytes
            for segment in segments[:-1]:
                if excess - segment.size < 0:
                    break
                excess -= segment.size
                oversized += 1
        return self._delete_oldest(max(expired, oversized))

    def delete_before(self, offset: int) -> int:
        """Delete every closed segment that lies wholly below `offset`; the log start moves to
        the first segment kept (so `offset` should be a segment's base). Returns the count."""
        if self._read_only is not None or self._closed:
            return 0
        count = 0
        while count < len(self._segments) - 1 and self._segments[count + 1].base_offset <= offset:
            count += 1
        return self._delete_oldest(count)

    def _delete_oldest(self, count: int) -> int:
        """Delete the oldest `count` segments (never the active one), log start first."""
        if count <= 0:
            return 0
        segments = self._segments
        new_start = segments[count].base_offset
        if new_start > self._log_start:
            self._store.save_log_start(new_start)
            self._log_start = new_start
            failpoints.hit("retention.after_log_start")
        doomed = segments[:count]
        del segments[:count]
        del self._bases[:count]
        if self._damaged is not None and self._damaged[1].offset < new_start:
            self._damaged = None  # the damaged segment is gone
            for segment in segments:
                self._note_damage(segment)
        self._store.delete_segments(doomed)
        return count

    def _check_writable(self) -> None:
        if self._closed:
            raise LogReadOnlyError("the log is closed")
        if self._read_only is not None:
            raise LogReadOnlyError(f"the log takes no more writes until it is reopened: {self._read_only}")

    # -- flushing ------------------------------------------------------------------------------

    def prepare_flush(self) -> FlushJob | None:
        """An fsync covering every append so far, or None when there is nothing to make durable."""
        if (
            not self._store.durable
            or self._closed
            or self._read_only is not None
            or self._flushed >= self.next_offset
        ):
            return None
        try:
            handles = self._store.flush_handles(self._segments[-1])
        except OSError as exc:  # no descriptor for the fsync (EMFILE, a dead handle): fail-stop
            self.fail_flush(None, exc)
            raise LogReadOnlyError(
                f"fsync could not start ({exc.strerror or exc}); the log takes no more writes"
            ) from exc
        return FlushJob(self.next_offset, handles)

    def complete_flush(self, job: FlushJob) -> None:
        # After any failed fsync nothing more counts as durable, even if a later fsync reports
        # success: Linux may have dropped the dirty pages and cleared the error ("fsyncgate").
        if self._read_only is None:
            self._flushed = max(self._flushed, job.target_offset)

    def fail_flush(self, job: FlushJob | None, error: BaseException) -> None:
        self._read_only = f"fsync failed: {error}"

    def flush(self) -> int:
        """fsync what was appended, in this thread; return the flushed offset."""
        job = self.prepare_flush()
        if job is not None:
            try:
                job.run()
            except OSError as exc:
                self.fail_flush(job, exc)
                raise LogReadOnlyError(
                    f"fsync failed ({exc.strerror or exc}); the log takes no more writes"
                ) from exc
            self.complete_flush(job)
        return self.flushed_offset

    # -- reading -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, end_offset: int | None = None) -> bytes:
        """Whole batches starting with the one that holds `offset`, up to `max_bytes`.

        The first batch is returned whole even when larger than `max_bytes`, so a reader always
        makes progress. Nothing at or past `end_offset` (e.g. the flushed offset) is returned.
        An offset below the log start or past the log end raises `OffsetOutOfRangeError`; at the
        end it returns no bytes. Damaged stored data raises `CorruptLogError` when the read
        starts at it and ends the read before it otherwise.
        """
        return self.read_batches(offset, max_bytes, end_offset)[0]

    def read_batches(self, offset: int, max_bytes: int, end_offset: int | None = None) -> tuple[bytes, int]:
        """`read`, and the offset that follows the returned batches (`offset` when none)."""
        end = self.next_offset
        if offset < self._log_start or offset > end:
            raise OffsetOutOfRangeError(offset, self._log_start, end)
        stop = end if end_offset is None else min(end_offset, end)
        damaged = self.damage
        if damaged is not None:
            if offset >= damaged.offset:
                raise damaged
            stop = min(stop, damaged.offset)
        i = max(bisect_right(self._bases, offset) - 1, 0)
        chunks: list[bytes] = []
        remaining = max_bytes
        after = offset
        for segment in self._segments[i:]:
            if after >= stop or (remaining <= 0 and chunks):
                break
            try:
                data, next_offset = segment.read(after, remaining, stop, min_one=not chunks)
            except CorruptLogError:
                self._note_damage(segment)
                if not chunks:
                    raise
                break  # serve what comes before the damage
            self._note_damage(segment)
            if not data:
                break
            chunks.append(data)
            remaining -= len(data)
            after = next_offset
            if next_offset < segment.next_offset:
                break  # the read filled up, or damage ends it
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data, max(after, offset)

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose record timestamp is at least `timestamp`, or None if none is."""
        for segment in self._segments:
            if segment.max_timestamp >= timestamp:
                found = segment.offset_for_timestamp(timestamp)
                self._note_damage(segment)
                if found is not None:
                    return max(found, self._log_start)
        return None

    def batch_headers(self, offset: int) -> Iterator[BatchHeader]:
        """The headers of the stored batches from the one holding `offset` (or the log start) to
        the log end, with their stamped base offsets; records are not read.

        Damage ends the walk of its segment, which goes on with the next segment (the batches
        the damage hides are not seen). Consume it before the log changes again: retention may
        close the segments it walks.
        """
        offset = max(offset, self._log_start)
        i = max(bisect_right(self._bases, offset) - 1, 0)
        for segment in self._segments[i:]:
            yield from segment.batch_headers(offset)
            self._note_damage(segment)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush, seal the active segment, mark a clean shutdown and release the files.

        A log that went read-only closes without the marker, so the next open recovers it.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._read_only is None:
                self._store.close(self._segments[-1])
                self._flushed = self.next_offset  # sealing fsynced everything
        finally:
            for segment in self._segments:
                segment.close()

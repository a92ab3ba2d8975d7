"""`FileSegment`: a segment as Kafka lays it out, `<20-digit base offset>.log` plus its indexes.

The `.log` file is the batches and nothing else. The `.index` and `.timeindex` files beside it are
written when the segment is sealed and are checked, never trusted, when it is opened again.

Bytes read back from the file are checked (magic, length, offset continuity, CRC-32C) the first
time they are served, so damage that happened at rest - a flipped bit in a closed segment - is
reported with its file, position and offset and never served. Bytes appended in this process were
validated on the way in; `_verified_end` remembers how far the file is known good, so re-reading
costs nothing.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

import attrs

from logbroker.errors import CorruptRecordError, LogReadOnlyError, StorageError
from logbroker.records.batch import BATCH_OVERHEAD, parse_header
from logbroker.storage.fs import Buffer, FileHandle, FileSystem, write_atomic
from logbroker.storage.index import IndexFileError, SegmentIndex
from logbroker.storage.scan import BatchScanner
from logbroker.storage.segment import BatchInfo, Damage, Segment

__all__ = [
    "INDEX_SUFFIX",
    "LOG_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "FileSegment",
    "Truncation",
    "log_file_name",
    "parse_log_file_name",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"


def log_file_name(base_offset: int) -> str:
    return f"{base_offset:020d}{LOG_SUFFIX}"


def parse_log_file_name(name: str) -> int | None:
    """The base offset a segment file name encodes, or None if it is not one."""
    stem, dot, suffix = name.partition(".")
    if (
        dot
        and "." + suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)
        and len(stem) == 20
        and stem.isdigit()
    ):
        return int(stem)
    return None


@attrs.frozen
class Truncation:
    """Bytes cut from the tail of the active segment when it was recovered."""

    path: str
    position: int
    offset: int
    bytes_removed: int
    reason: str


class FileSegment(Segment):
    """Batches in a `.log` file reached through the file-system seam."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        handle: FileHandle,
        index_interval_bytes: int,
        now_ms: int,
    ) -> None:
        super().__init__(base_offset, index_interval_bytes, now_ms)
        self._fs = fs
        self._directory = directory
        self._handle = handle
        self._verified_end = 0

    @property
    def path(self) -> str:
        return os.path.join(self._directory, log_file_name(self.base_offset))

    def _sibling(self, suffix: str) -> str:
        return os.path.join(self._directory, f"{self.base_offset:020d}{suffix}")

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def create(
        cls, fs: FileSystem, directory: str, base_offset: int, index_interval_bytes: int, now_ms: int
    ) -> FileSegment:
        """Create an empty segment file and make its directory entry durable."""
        path = os.path.join(directory, log_file_name(base_offset))
        try:
            handle = fs.open(path, "a")
        except OSError as exc:
            raise StorageError(f"{path}: cannot create segment: {exc.strerror or exc}") from exc
        try:
            existing = handle.size()
        except OSError as exc:
            handle.close()
            raise StorageError(f"{path}: cannot create segment: {exc.strerror or exc}") from exc
        if existing:
            handle.close()
            raise StorageError(f"{path}: cannot create segment: the file exists and holds {existing} bytes")
        try:
            fs.fsync_dir(directory)
        except OSError as exc:
            handle.close()
            raise LogReadOnlyError(
                f"{path}: cannot make the new segment durable: {exc.strerror or exc}"
            ) from exc
        return cls(fs, directory, base_offset, handle, index_interval_bytes, now_ms)

    @classmethod
    def open_existing(
        cls,
        fs: FileSystem,
        directory: str,
        base_offset: int,
        index_interval_bytes: int,
        now_ms: int,
    ) -> FileSegment:
        """Open a segment file as it is; the caller loads or rebuilds its index."""
        path = os.path.join(directory, log_file_name(base_offset))
        handle = fs.open(path, "a")
        try:
            segment = cls(fs, directory, base_offset, handle, index_interval_bytes, now_ms)
            segment._size = handle.size()
            segment.modified_ms = fs.mtime_ms(path)
        except BaseException:
            handle.close()
            raise
        return segment

    def load_index(self, next_offset: int) -> bool:
        """Load the index files, checked against a segment ending at `next_offset`.

        Walks the batches after the last index entry to the end of the file, which confirms the
        index's last entry and the segment's end. Returns False (leaving the index as it was) if
        the files are missing or do not match; the caller then rebuilds.
        """
        try:
            index_data = self._fs.read_file(self._sibling(INDEX_SUFFIX))
            time_data = self._fs.read_file(self._sibling(TIME_INDEX_SUFFIX))
            index = SegmentIndex.from_files(
                self.base_offset,
                self._index_interval,
                index_data,
                time_data,
                segment_size=self._size,
                next_offset=next_offset,
            )
        except (OSError, IndexFileError):
            return False
        if not index.positions:
            if self._size or next_offset != self.base_offset:
                return False
            self._index = index
            return True
        scanner = BatchScanner(
            self._read_at,
            self._size,
            position=index.positions[-1],
            expected_offset=index.offsets[-1],
            check_crc=False,
        )
        for _position, header in scanner:
            index.observe(header.last_offset, header.max_timestamp)
        if scanner.problem is not None or scanner.next_offset != next_offset:
            return False
        self._index = index
        self._next_offset = next_offset
        return True

    # -- primitives ----------------------------------------------------------------------------

    def _write(self, parts: Sequence[Buffer]) -> None:
        try:
            self._handle.append(parts)
        except OSError as exc:
            reason = (
                "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            )
            try:
                self._handle.truncate(self._size)
            except OSError as cleanup:
                raise LogReadOnlyError(
                    f"{self.path}: write failed ({reason}) and the partial write could not be "
                    f"removed ({cleanup.strerror or cleanup}); the log takes no more writes until reopened"
                ) from exc
            raise StorageError(f"{self.path}: write failed: {reason}; nothing was stored") from exc

    def _read_at(self, position: int, size: int) -> bytes:
        try:
            return self._handle.pread(size, position)
        except OSError as exc:
            raise StorageError(f"{self.path}: read failed: {exc.strerror or exc}") from exc

    def _truncate_bytes(self, size: int) -> None:
        try:
            self._handle.truncate(size)
        except OSError as exc:
            raise LogReadOnlyError(f"{self.path}: truncate failed: {exc.strerror or exc}") from exc
        self._verified_end = min(self._verified_end, size)

    def _checked(self, data: bytes, position: int, first_offset: int) -> bytes:
        end = position + len(data)
        if end <= self._verified_end:
            return data
        view = memoryview(data)
        scanner = BatchScanner(
            lambda at, size: view[at - position : at - position + size],
            end,
            position=position,
            expected_offset=first_offset,
        )
        for _ in scanner:
            pass
        if scanner.problem is not None:
            problem = scanner.problem
            self._note_damage(Damage(problem.position, problem.offset or first_offset, problem.reason))
            data = data[: problem.position - position]
            end = problem.position
        if position <= self._verified_end:
            self._verified_end = max(self._verified_end, end)
        return data

    def append(self, parts: Sequence[Buffer], batches: Sequence[BatchInfo], now_ms: int) -> None:
        verified = self._verified_end == self._size
        super().append(parts, batches, now_ms)
        if verified:
            self._verified_end = self._size  # appended bytes were validated on the way in

    def verify_all(self) -> None:
        """Check every stored byte now (CRC included); raise `segment.DamageError` at the first damage."""
        self.rebuild_index(check_crc=True)
        self._verified_end = self._size

    # -- lifecycle -----------------------------------------------------------------------------

    def fsync(self) -> None:
        try:
            self._handle.fsync()
        except OSError as exc:
            raise LogReadOnlyError(
                f"{self.path}: fsync failed ({exc.strerror or exc}); the log takes no more writes "
                "until reopened"
            ) from exc

    def flush_handle(self) -> FileHandle:
        """A handle a worker thread may fsync while this one keeps appending (or closes)."""
        return self._handle.dup()

    def seal(self) -> None:
        """Make the segment durable and write its index files (it will not grow any more)."""
        super().seal()
        self.fsync()
        self.write_index_files()

    def write_index_files(self) -> None:
        """Write `.index` and `.timeindex` atomically: a crash leaves the old files or the new."""
        index_data, time_data = self._index.to_files()
        for suffix, content in ((INDEX_SUFFIX, index_data), (TIME_INDEX_SUFFIX, time_data)):
            path = self._sibling(suffix)
            try:
                write_atomic(self._fs, path, content)
            except OSError as exc:
                raise StorageError(f"{path}: cannot write index: {exc.strerror or exc}") from exc

    # -- recovery ------------------------------------------------------------------------------

    def first_batch_timestamp(self) -> int | None:
        """The max timestamp of the first batch, if the segment has one with a timestamp."""
        if self._size < BATCH_OVERHEAD:
            return None
        try:
            header = parse_header(self._read_at(0, BATCH_OVERHEAD))
        except CorruptRecordError:
            return None
        return header.max_timestamp if header.max_timestamp >= 0 else None

    def truncate_to_position(self, position: int, next_offset: int) -> None:
        """Cut a damaged tail found by `verify_all` (which left the index covering `position`)."""
        self._truncate_bytes(position)
        self._size = position
        self._next_offset = next_offset
        self._verified_end = position
        self.damage = None

    def keep_after_damage(self, damage: Damage) -> Truncation | None:
        """Recovery found `damage` in this (active) segment: is it mid-file damage?

        If the damaged batch's length still leads to an intact batch with the offsets that should
        follow, the damage is not a torn tail: keep the batches after it (cutting only a torn
        tail past them, described by the returned `Truncation`, which may remove 0 bytes), record
        the damage, and go on appending after them. Otherwise return None: the caller truncates
        at the damage.
        """
        try:
            header = parse_header(self._read_at(damage.position, BATCH_OVERHEAD))
        except CorruptRecordError:
            return None
        following = damage.position + header.size
        if following >= self._size:
            return None
        scanner = BatchScanner(
            self._read_at,
            self._size,
            position=following,
            expected_offset=damage.offset + header.last_offset_delta + 1,
        )
        for _ in scanner:
            pass
        if scanner.batches == 0:
            return None
        end = scanner.position
        cut = Truncation(self.path, end, scanner.next_offset or damage.offset, self._size - end, "torn tail")
        if end < self._size:
            self._truncate_bytes(end)
            self._size = end
        self._next_offset = scanner.next_offset or damage.offset
        self._verified_end = damage.position
        self.damage = damage
        return cut

    def force_next_offset(self, next_offset: int) -> None:
        """A closed segment ends where the next begins, even if damage hides its last batches."""
        self._next_offset = next_offset

    def close(self) -> None:
        self._handle.close()

    def remove(self) -> None:
        """Close and delete the segment's files (the caller fsyncs the directory)."""
        self.close()
        failure: OSError | None = None
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            path = self._sibling(suffix)
            try:
                self._fs.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise StorageError(f"{self.path}: cannot delete: {failure.strerror or failure}") from failure

"""A partition directory on disk: its files, how they change, and recovery when it is opened.

    <data dir>/<topic>-<partition>/
        00000000000000000000.log         batches (Kafka's segment layout)
        00000000000000000000.index       sparse offset index   (derived, rebuilt when in doubt)
        00000000000000000000.timeindex   time index            (derived, rebuilt when in doubt)
        00000000000000170410.log         ...
        log-start-offset                 the first offset the log serves, as decimal text
        clean-shutdown                   present only while the log is closed cleanly
        producer-state.json              idempotent-producer state up to an offset (written and
                                         read by `broker/producer_state.py`; recovery keeps it)

Every multi-step change is ordered so a crash between any two steps recovers to "before" or
"after":

- roll: fsync the old `.log`, write and fsync its index files, create the new `.log`, fsync the
  directory. Closed segments are therefore always complete and durable; only the last (active)
  segment can have a torn tail.
- retention: persist the new log start (temp file, fsync, rename, fsync directory), then delete the
  old segments' files and fsync the directory. Segments left wholly below the log start by a crash
  are deleted when the directory is opened.
- clean shutdown: seal the active segment, then write the marker (atomically). Opening removes
  the marker (and fsyncs the directory) before it changes anything else.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import attrs

from logbroker.errors import StorageError
from logbroker.storage.config import LogConfig
from logbroker.storage.file_segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    FileSegment,
    Truncation,
    parse_log_file_name,
)
from logbroker.storage.fs import FileHandle, FileSystem, write_atomic
from logbroker.storage.segment import Damage, DamageError, Segment

__all__ = [
    "CLEAN_SHUTDOWN_FILE",
    "LOG_START_FILE",
    "MAX_PRODUCER_STATE_BYTES",
    "PRODUCER_STATE_FILE",
    "PartitionDirectory",
    "RecoveryReport",
    "Truncation",
]

LOG_START_FILE = "log-start-offset"
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
#: A snapshot of the partition's idempotent-producer state (see `broker/producer_state.py`). The
#: storage layer only keeps it: recovery removes leftover temp files and index files without a
#: segment, never this file; `verify` checks that it reads as JSON.
PRODUCER_STATE_FILE = "producer-state.json"
#: A producer-state snapshot larger than this is not read (about 200,000 producers).
MAX_PRODUCER_STATE_BYTES = 64 << 20
TMP_SUFFIX = ".tmp"


@attrs.define
class RecoveryReport:
    """What opening a partition directory found and did."""

    directory: str
    created: bool = False
    clean_shutdown: bool = False
    segments: int = 0
    log_start_offset: int = 0
    next_offset: int = 0
    bytes_scanned: int = 0
    seconds: float = 0.0
    truncations: list[Truncation] = attrs.Factory(list)
    rebuilt_indexes: list[str] = attrs.Factory(list)
    removed_files: list[str] = attrs.Factory(list)
    damage: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    @property
    def changed_data(self) -> bool:
        """True when recovery removed records or found damage (worth a warning)."""
        return bool(self.truncations or self.damage)

    def summary(self) -> str:
        parts = [
            f"{self.directory}: offsets {self.log_start_offset}..{self.next_offset} in "
            f"{self.segments} segment(s), "
            + (
                "new log"
                if self.created
                else "clean shutdown"
                if self.clean_shutdown
                else f"recovered after an unclean shutdown ({self.bytes_scanned} bytes scanned)"
            )
            + f" in {self.seconds * 1000:.1f} ms"
        ]
        for cut in self.truncations:
            parts.append(
                f"truncated {cut.bytes_removed} bytes of {cut.path} at byte {cut.position} "
                f"(offset {cut.offset}): {cut.reason}"
            )
        if self.rebuilt_indexes:
            parts.append(f"rebuilt {len(self.rebuilt_indexes)} index file(s)")
        if self.removed_files:
            parts.append(f"removed {', '.join(os.path.basename(p) for p in self.removed_files)}")
        parts.extend(f"DAMAGE: {d}" for d in self.damage)
        parts.extend(self.notes)
        return "; ".join(parts)


class PartitionDirectory:
    """The files of one partition log: segment creation and deletion, log start, shutdown marker."""

    durable = True

    def __init__(self, fs: FileSystem, directory: str, config: LogConfig) -> None:
        self.fs = fs
        self.directory = directory
        self.config = config

    def new_segment(self, base_offset: int, now_ms: int) -> Segment:
        return FileSegment.create(
            self.fs, self.directory, base_offset, self.config.index_interval_bytes, now_ms
        )

    def delete_segments(self, segments: Sequence[Segment]) -> None:
        """Close and delete the segments' files; files a failure leaves behind lie wholly below
        the log start and are deleted when the directory is next opened."""
        for segment in segments:
            segment.close()
        failure: StorageError | None = None
        for segment in segments:
            assert isinstance(segment, FileSegment)
            try:
                segment.remove()
            except StorageError as exc:
                failure = failure or exc
        self._fsync_dir()
        if failure is not None:
            raise failure

    def save_log_start(self, offset: int) -> None:
        try:
            write_atomic(self.fs, self._path(LOG_START_FILE), f"{offset}\n".encode())
        except OSError as exc:
            raise StorageError(
                f"{self.directory}: cannot save the log start offset: {exc.strerror or exc}"
            ) from exc

    def flush_handles(self, active: Segment) -> list[FileHandle]:
        assert isinstance(active, FileSegment)
        return [active.flush_handle()]

    def close(self, active: Segment) -> None:
        """Seal the active segment and mark the directory as cleanly closed."""
        active.seal()
        marker = {"segment": active.base_offset, "size": active.size, "next_offset": active.next_offset}
        try:
            write_atomic(self.fs, self._path(CLEAN_SHUTDOWN_FILE), json.dumps(marker).encode())
        except OSError as exc:
            raise StorageError(
                f"{self.directory}: cannot write the clean-shutdown marker: {exc.strerror or exc}"
            ) from exc

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _fsync_dir(self) -> None:
        try:
            self.fs.fsync_dir(self.directory)
        except OSError as exc:
            raise StorageError(f"{self.directory}: cannot sync the directory: {exc.strerror or exc}") from exc

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, now_ms: int) -> tuple[list[Segment], int, RecoveryReport]:
        """Open the directory: check, repair what is derived, truncate a torn tail, report.

        Returns the segments (oldest first, the last one active), the log start offset and the
        report. Damage in closed segments is left in place and recorded on the segment, which
        refuses to serve at and past it.
        """
        started = time.perf_counter()
        report = RecoveryReport(self.directory)
        try:
            segments, log_start = self._recover(now_ms, report)
        except OSError as exc:
            raise StorageError(f"{self.directory}: cannot open the log: {exc.strerror or exc}") from exc
        report.segments = len(segments)
        report.log_start_offset = log_start
        report.next_offset = segments[-1].next_offset
        report.seconds = time.perf_counter() - started
        return segments, log_start, report

    def _recover(self, now_ms: int, report: RecoveryReport) -> tuple[list[Segment], int]:
        fs = self.fs
        new_directory = not fs.is_dir(self.directory)
        fs.make_dirs(self.directory)
        names = fs.list_dir(self.directory)

        marker = self._take_clean_marker(names, report)
        for name in names:
            if name.endswith(TMP_SUFFIX):
                self._remove(name, report)
        log_start = self._read_log_start(names, report)

        bases = sorted(
            {b for n in names if n.endswith(LOG_SUFFIX) and (b := parse_log_file_name(n)) is not None}
        )
        for name in names:
            base = parse_log_file_name(name)
            if base is not None and not name.endswith(LOG_SUFFIX) and base not in bases:
                self._remove(name, report)  # an index whose segment is gone

        # Retention only ever persists the base offset of a segment it keeps, so a log start that
        # is not one is not trusted - and nothing is deleted on its word.
        if log_start is not None and bases and log_start not in bases:
            report.notes.append(
                f"{LOG_START_FILE} says {log_start}, which is not the start of any segment; ignored"
            )
            log_start = None
        # Segments wholly below the log start: a retention interrupted after it moved the start.
        while log_start is not None and len(bases) > 1 and bases[1] <= log_start:
            self._remove_segment_files(bases.pop(0), report)
        if report.removed_files:
            fs.fsync_dir(self.directory)

        if not bases:
            base = log_start or 0
            report.created = new_directory
            if new_directory or log_start is None:
                self.save_log_start(base)
            segment = self.new_segment(base, now_ms)
            return [segment], base

        segments: list[Segment] = []
        try:
            for i, base in enumerate(bases):
                segment = FileSegment.open_existing(
                    self.fs, self.directory, base, self.config.index_interval_bytes, now_ms
                )
                segments.append(segment)
                if i < len(bases) - 1:
                    self._recover_closed(segment, bases[i + 1], report)
                else:
                    self._recover_active(segment, marker, now_ms, report)
        except BaseException:
            for segment in segments:
                segment.close()
            raise

        first = segments[0].base_offset
        if log_start is None:
            report.notes.append(
                f"no valid {LOG_START_FILE} file: the log starts at its first segment, offset {first}"
            )
            log_start = first
        return segments, max(log_start, first)

    def _take_clean_marker(self, names: list[str], report: RecoveryReport) -> dict[str, int] | None:
        if CLEAN_SHUTDOWN_FILE not in names:
            return None
        path = self._path(CLEAN_SHUTDOWN_FILE)
        marker: dict[str, int] | None
        try:
            loaded = json.loads(self.fs.read_file(path))
            marker = {k: int(loaded[k]) for k in ("segment", "size", "next_offset")}
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            report.notes.append(f"unreadable {CLEAN_SHUTDOWN_FILE} marker ignored")
            marker = None
        # Removed before anything else changes: a crash from here on is an unclean shutdown.
        self.fs.unlink(path)
        self.fs.fsync_dir(self.directory)
        return marker

    def _read_log_start(self, names: list[str], report: RecoveryReport) -> int | None:
        if LOG_START_FILE not in names:
            return None
        try:
            value = int(self.fs.read_file(self._path(LOG_START_FILE)).decode("ascii").strip())
        except (ValueError, UnicodeDecodeError):
            report.notes.append(f"unreadable {LOG_START_FILE} file ignored")
            return None
        return value if value >= 0 else None

    def _recover_closed(self, segment: FileSegment, next_base: int, report: RecoveryReport) -> None:
        if segment.load_index(next_base):
            return
        report.rebuilt_indexes.append(segment.path)
        report.bytes_scanned += segment.size
        try:
            segment.verify_all()
        except DamageError as found:
            self._record_damage(segment, found.damage, report)
        else:
            if segment.next_offset != next_base:
                self._record_damage(
                    segment,
                    Damage(
                        segment.size,
                        segment.next_offset,
                        f"the segment ends at offset {segment.next_offset} but the next one starts at {next_base}",
                    ),
                    report,
                )
            else:
                segment.write_index_files()
        segment.force_next_offset(next_base)

    def _recover_active(
        self, segment: FileSegment, marker: dict[str, int] | None, now_ms: int, report: RecoveryReport
    ) -> None:
        if (
            marker is not None
            and marker["segment"] == segment.base_offset
            and marker["size"] == segment.size
            and segment.load_index(marker["next_offset"])
        ):
            report.clean_shutdown = True
        else:
            if marker is not None:
                report.notes.append("the clean-shutdown marker does not match the files; recovered by a scan")
            report.bytes_scanned += segment.size
            try:
                segment.verify_all()
            except DamageError as found:
                damage = found.damage
                cut = segment.keep_after_damage(damage)
                if cut is not None:
                    # Not a torn tail: an intact batch follows the damaged one, so both were
                    # written before the crash. Keep them and refuse to serve from the damage on.
                    self._record_damage(segment, damage, report)
                    if cut.bytes_removed:
                        report.truncations.append(cut)
                else:
                    removed = segment.size - damage.position
                    report.truncations.append(
                        Truncation(segment.path, damage.position, damage.offset, removed, damage.reason)
                    )
                    segment.truncate_to_position(damage.position, damage.offset)
            segment.fsync()
        segment.created_ms = self._rolling_base(segment, now_ms)

    def _rolling_base(self, segment: FileSegment, now_ms: int) -> int:
        """When a recovered active segment counts as created, for `segment.ms`.

        The first batch's timestamp, as Kafka does, but clamped to the last `segment.ms` so a
        producer's clock can neither keep a segment open forever nor roll every batch.
        """
        first = segment.first_batch_timestamp()
        if first is None:
            return now_ms
        return min(max(first, now_ms - self.config.segment_ms), now_ms)

    def _record_damage(self, segment: FileSegment, damage: Damage, report: RecoveryReport) -> None:
        segment.damage = damage
        report.damage.append(
            f"{segment.path}: byte {damage.position}, offset {damage.offset}: {damage.reason}; "
            f"the log refuses to serve from offset {damage.offset} on"
        )

    def _remove(self, name: str, report: RecoveryReport) -> None:
        path = self._path(name)
        self.fs.unlink(path)
        report.removed_files.append(path)

    def _remove_segment_files(self, base: int, report: RecoveryReport) -> None:
        names = set(self.fs.list_dir(self.directory))
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            name = f"{base:020d}{suffix}"
            if name in names:
                self._remove(name, report)

"""`logbroker verify`: check data directories, partition directories or segment files, read-only.

Every batch of every segment is checked: header, length, CRC-32C, and that it starts at the offset
its predecessor (or, for the first batch, the segment's file name) says. Segments of a partition
must follow each other without gaps. Each finding names the file, the byte position and the
offset at which valid data ends.

Damage to the data is a finding; anything the broker rebuilds or works around on its own - a
missing or stale index, a missing log-start file, a leftover temp file, an unreadable or stale
producer-state snapshot - is a note.
"""

from __future__ import annotations

import json
import os

import attrs

from logbroker.storage.file_segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, parse_log_file_name
from logbroker.storage.fs import FileSystem, OsFileSystem
from logbroker.storage.index import IndexFileError, SegmentIndex
from logbroker.storage.partition_dir import (
    CLEAN_SHUTDOWN_FILE,
    LOG_START_FILE,
    MAX_PRODUCER_STATE_BYTES,
    PRODUCER_STATE_FILE,
    TMP_SUFFIX,
)
from logbroker.storage.scan import BatchScanner

__all__ = ["Finding", "VerifyReport", "verify_paths"]


@attrs.frozen
class Finding:
    """Damaged data: valid data of `path` ends at byte `position`, offset `offset`."""

    path: str
    position: int
    offset: int | None
    kind: str
    reason: str


@attrs.define
class VerifyReport:
    findings: list[Finding] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    segments: int = 0
    batches: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_paths(paths: list[str], fs: FileSystem | None = None) -> VerifyReport:
    """Check each path: a data directory, a partition directory or a segment file."""
    fs = fs or OsFileSystem()
    report = VerifyReport()
    for path in paths:
        if fs.is_dir(path):
            partitions = _partition_dirs(fs, path)
            if not partitions:
                report.notes.append(f"{path}: no segment files found")
            for directory in partitions:
                _verify_partition(fs, directory, report)
        elif os.path.basename(path) == PRODUCER_STATE_FILE:
            report.notes.append(f"{path}: a producer-state snapshot, not a segment")
            _check_producer_state(fs, path, None, report)
        elif fs.exists(path):
            _verify_segment(fs, path, parse_log_file_name(os.path.basename(path)), report)
        else:
            raise FileNotFoundError(2, "No such file or directory", path)
    return report


def _partition_dirs(fs: FileSystem, root: str) -> list[str]:
    found = []
    names = sorted(fs.list_dir(root))
    if any(n.endswith(LOG_SUFFIX) for n in names):
        found.append(root)
    for name in names:
        child = os.path.join(root, name)
        if fs.is_dir(child):
            found.extend(_partition_dirs(fs, child))
    return found


def _verify_partition(fs: FileSystem, directory: str, report: VerifyReport) -> None:
    names = sorted(fs.list_dir(directory))
    bases = sorted(b for n in names if n.endswith(LOG_SUFFIX) and (b := parse_log_file_name(n)) is not None)
    expected: int | None = None
    for i, base in enumerate(bases):
        path = os.path.join(directory, f"{base:020d}{LOG_SUFFIX}")
        if expected is not None and base != expected:
            report.findings.append(
                Finding(
                    path,
                    0,
                    expected,
                    "gap",
                    f"segment starts at offset {base} but the previous one ends at {expected}",
                )
            )
        # The active segment's index is written when it is sealed: only expected after a clean shutdown.
        sealed = i < len(bases) - 1 or CLEAN_SHUTDOWN_FILE in names
        index = _load_index(fs, path, base, report) if sealed else None
        expected = _verify_segment(fs, path, base, report, index)
    for name in names:
        if name.endswith(TMP_SUFFIX):
            report.notes.append(f"{os.path.join(directory, name)}: leftover temporary file")
    _check_log_start(fs, directory, names, bases, expected, report)
    if PRODUCER_STATE_FILE in names:
        _check_producer_state(fs, os.path.join(directory, PRODUCER_STATE_FILE), expected, report)


def _load_index(fs: FileSystem, path: str, base: int, report: VerifyReport) -> SegmentIndex | None:
    stem = path[: -len(LOG_SUFFIX)]
    try:
        return SegmentIndex.from_files(
            base,
            1,
            fs.read_file(stem + INDEX_SUFFIX),
            fs.read_file(stem + TIME_INDEX_SUFFIX),
            segment_size=fs.file_size(path),
            next_offset=1 << 62,
        )
    except FileNotFoundError as exc:
        report.notes.append(f"{exc.filename}: missing (the broker rebuilds it from the log)")
    except IndexFileError as exc:
        report.notes.append(f"{stem}{INDEX_SUFFIX}: {exc} (the broker rebuilds it from the log)")
    return None


def _verify_segment(
    fs: FileSystem, path: str, base: int | None, report: VerifyReport, index: SegmentIndex | None = None
) -> int | None:
    """Scan one segment file, checking `index` against it; return the offset it ends at."""
    entries = dict(zip(index.positions, index.offsets, strict=True)) if index is not None else {}
    matched = 0
    max_timestamp = -1
    handle = fs.open(path, "r")
    try:
        size = handle.size()
        scanner = BatchScanner(lambda at, n: handle.pread(n, at), size, expected_offset=base)
        for position, header in scanner:
            if entries.get(position) == header.base_offset:
                matched += 1
            max_timestamp = max(max_timestamp, header.max_timestamp)
    finally:
        handle.close()
    report.segments += 1
    report.batches += scanner.batches
    report.bytes += size
    if scanner.problem is not None:
        problem = scanner.problem
        what = {"torn": "torn tail", "corrupt": "damaged batch", "gap": "offsets do not follow on"}[
            problem.kind
        ]
        report.findings.append(
            Finding(path, problem.position, problem.offset, problem.kind, f"{what}: {problem.reason}")
        )
        return None
    if index is not None and (
        matched != len(entries)
        or index.max_timestamp != max_timestamp
        or any(o >= (scanner.next_offset or 0) for o in index.time_offsets)
    ):
        report.notes.append(
            f"{path[: -len(LOG_SUFFIX)]}{INDEX_SUFFIX}: does not match the log (the broker rebuilds it)"
        )
    return scanner.next_offset


def _check_log_start(
    fs: FileSystem,
    directory: str,
    names: list[str],
    bases: list[int],
    end: int | None,
    report: VerifyReport,
) -> None:
    path = os.path.join(directory, LOG_START_FILE)
    if LOG_START_FILE not in names:
        report.notes.append(f"{path}: missing (the log starts at its first segment)")
        return
    try:
        start = int(fs.read_file(path).decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        report.notes.append(f"{path}: unreadable (the log starts at its first segment)")
        return
    if bases and start < bases[0]:
        report.notes.append(f"{path}: says {start}, before the first segment ({bases[0]})")
    elif end is not None and start > end:
        report.notes.append(f"{path}: says {start}, past the end of the log ({end})")


def _check_producer_state(fs: FileSystem, path: str, end: int | None, report: VerifyReport) -> None:
    """A snapshot the broker would not use is a note: it rebuilds the state from the log."""
    rebuilt = "the broker rebuilds the producer state from the log"
    size = fs.file_size(path)
    if size > MAX_PRODUCER_STATE_BYTES:
        report.notes.append(f"{path}: {size} bytes, too large to be a producer-state snapshot ({rebuilt})")
        return
    try:
        offset = json.loads(fs.read_file(path))["offset"]
        if type(offset) is not int:
            raise TypeError(offset)
    except (ValueError, KeyError, TypeError, RecursionError):
        report.notes.append(f"{path}: unreadable producer-state snapshot ({rebuilt})")
        return
    if end is not None and offset > end:
        report.notes.append(
            f"{path}: snapshot at offset {offset}, past the end of the log ({end}) ({rebuilt})"
        )

"""Disk full and I/O errors at every step (SQLite's ioerr loop): fail the N-th call of an
operation for every N, and check that nothing is acked that was not stored, that the log stays
consistent and usable, and that no handle leaks."""

from __future__ import annotations

import errno

import pytest

from logbroker.errors import LogReadOnlyError, StorageError
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.storage.log import PartitionLog
from tests.helpers import batch, offsets

DIR = "/data/t-0"
ONE = len(batch(2))
CONFIG = LogConfig(segment_bytes=3 * ONE, index_interval_bytes=ONE, retention_bytes=5 * ONE)


def workload(fs: FaultFileSystem, log: PartitionLog) -> tuple[list[int], int, bool]:
    """Appends with rolls, flushes and retention; returns the acked offsets, the flushed
    offset, and whether the log went read-only."""
    acked: list[int] = []
    flushed = 0
    read_only = False
    for step in range(16):
        before = log.next_offset
        try:
            base = log.append(batch(2, start=step), now_ms=0)
            acked.extend([base, base + 1])
        except LogReadOnlyError:
            read_only = True
            assert log.next_offset == before
        except StorageError:
            assert log.next_offset == before  # nothing of a failed append is kept
        if step % 3 == 2:
            try:
                flushed = log.flush()
            except LogReadOnlyError:
                read_only = True
        if step % 5 == 4:
            try:
                log.apply_retention(0)
            except StorageError:
                pass
        if read_only:
            assert log.read_only_reason is not None
            with pytest.raises(LogReadOnlyError):
                log.append(batch(1), now_ms=0)
    return acked, flushed, read_only


def dry_run_counts() -> dict[str, int]:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    workload(fs, log)
    log.close()
    return dict(fs.counts)


COUNTS = dry_run_counts()
CASES = [
    (op, n, code)
    for op, code in [
        ("write", errno.ENOSPC),
        ("write", errno.EIO),
        ("fsync", errno.EIO),
        ("open", errno.ENOSPC),
        ("rename", errno.EIO),
        ("fsync_dir", errno.EIO),
        ("unlink", errno.EIO),
    ]
    for n in range(COUNTS.get(op, 0))
]


@pytest.mark.parametrize(("op", "n", "code"), CASES)
def test_a_failure_at_every_step(op: str, n: int, code: int) -> None:
    fs = FaultFileSystem()
    fs.make_dirs(DIR)
    fs.fail(op, after=n, error=code)
    try:
        log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    except StorageError:
        # Creating the log failed: nothing half-made stands in the way of the next attempt.
        log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
        assert (log.log_start_offset, log.next_offset) == (0, 0)
    acked, flushed, read_only = workload(fs, log)
    # Everything acked is readable, in order, gap-free from the log start.
    readable = offsets(log.read(log.log_start_offset, 1 << 30))
    assert readable == [o for o in acked if o >= log.log_start_offset]
    if read_only:
        assert log.prepare_flush() is None  # a failed fsync is never retried and acked
    try:
        log.close()  # may fail to seal; the handles are released all the same
    except StorageError:
        pass
    assert fs.open_handles == 0
    # After losing power, the log reopens to a clean prefix that keeps all it flushed.
    fs.power_loss()
    reopened = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    start = reopened.log_start_offset
    got = offsets(reopened.read(start, 1 << 30))
    assert got == [o for o in acked if o >= start][: len(got)]
    assert start + len(got) >= flushed
    assert reopened.append(batch(1), now_ms=0) == reopened.next_offset - 1
    reopened.close()
    assert fs.open_handles == 0


def test_a_failed_cleanup_after_a_failed_write_makes_the_log_read_only() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    log.append(batch(2), now_ms=0)
    fs.fail("write", error=errno.EIO)
    fs.fail("truncate", error=errno.EIO)
    with pytest.raises(LogReadOnlyError, match="could not be removed"):
        log.append(batch(2), now_ms=0)
    assert log.read_only_reason is not None
    assert offsets(log.read(0, 1 << 20)) == [0, 1]
    log.close()
    reopened = PartitionLog.open(fs, DIR, now_ms=0)  # recovery cuts the half-written batch
    assert offsets(reopened.read(0, 1 << 20)) == [0, 1]
    assert reopened.recovery is not None
    assert len(reopened.recovery.truncations) == 1
    reopened.close()


def test_a_full_disk_refuses_appends_until_space_is_freed() -> None:
    fs = FaultFileSystem(capacity=20 * ONE)
    config = LogConfig(segment_bytes=4 * ONE, index_interval_bytes=ONE)
    log = PartitionLog.open(fs, DIR, config, now_ms=0)
    acked = 0
    with pytest.raises(StorageError, match="no space left"):
        for i in range(100):
            log.append(batch(2, start=i), now_ms=0)
            acked += 2
    assert log.next_offset == acked
    assert offsets(log.read(0, 1 << 30)) == list(range(acked))  # reads go on
    log.config = LogConfig(segment_bytes=4 * ONE, index_interval_bytes=ONE, retention_bytes=8 * ONE)
    assert log.apply_retention(0) > 0  # deleting old segments frees the space at once
    assert log.append(batch(2), now_ms=0) == acked
    log.close()
    assert fs.open_handles == 0


@pytest.mark.parametrize(
    ("op", "n"), [(op, n) for op in ("open", "read", "fsync", "write") for n in range(14)]
)
def test_an_open_failing_at_any_step_leaks_no_handle(op: str, n: int) -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, LogConfig(segment_bytes=300, index_interval_bytes=100), now_ms=0)
    for i in range(12):
        log.append(batch(1, start=i), now_ms=0)
    log.flush()
    for segment in log.segments:
        segment.close()  # unclean: the next open scans and rewrites
    fs.unlink(DIR + "/00000000000000000000.index")
    assert fs.open_handles == 0
    fs.fail(op, after=n)
    try:
        PartitionLog.open(fs, DIR, LogConfig(segment_bytes=300, index_interval_bytes=100), now_ms=0).close()
    except Exception:
        pass
    assert fs.open_handles == 0

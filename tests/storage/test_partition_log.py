"""PartitionLog behaviour: append, read, roll, retention, log start, flush, read-only."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logbroker.errors import (
    CorruptLogError,
    CorruptRecordError,
    InvalidRecordError,
    LogReadOnlyError,
    OffsetOutOfRangeError,
    RecordListTooLargeError,
)
from logbroker.records import encode_batch
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog
from tests.helpers import batch, offsets, records

OpenLog = Callable[..., PartitionLog]


def _opener(kind: str, tmp_path: Path, opened: list[PartitionLog]) -> OpenLog:
    fs = FaultFileSystem() if kind == "fault" else OsFileSystem()
    directory = str(tmp_path / "topic-0") if kind == "file" else "/data/topic-0"

    def open_(config: LogConfig | None = None, now_ms: int = 0) -> PartitionLog:
        if kind == "memory":
            log = PartitionLog.in_memory(config, now_ms=now_ms)
        else:
            log = PartitionLog.open(fs, directory, config, now_ms=now_ms)
        opened.append(log)
        return log

    open_.kind = kind  # type: ignore[attr-defined]
    return open_


@pytest.fixture(params=["memory", "file", "fault"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Opens the same log again on each call (memory logs are new each time)."""
    opened: list[PartitionLog] = []
    yield _opener(request.param, tmp_path, opened)
    for log in opened:
        log.close()


@pytest.fixture(params=["file", "fault"])
def open_durable_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    """Like `open_log`, for the kinds that survive a reopen."""
    opened: list[PartitionLog] = []
    yield _opener(request.param, tmp_path, opened)
    for log in opened:
        log.close()


def durable(open_log: OpenLog) -> bool:
    return open_log.kind != "memory"  # type: ignore[attr-defined]


def test_offsets_are_assigned_gap_free(open_log: OpenLog) -> None:
    log = open_log()
    assert [log.append(batch(n), now_ms=0) for n in (1, 3, 2)] == [0, 1, 4]
    assert log.next_offset == 6
    assert offsets(log.read(0, 1 << 20)) == list(range(6))


def test_several_batches_in_one_append(open_log: OpenLog) -> None:
    log = open_log()
    assert log.append(batch(2) + batch(3), now_ms=0) == 0
    assert offsets(log.read(0, 1 << 20)) == [0, 1, 2, 3, 4]


def test_bad_batches_are_refused_and_nothing_is_written(open_log: OpenLog) -> None:
    log = open_log()
    log.append(batch(1), now_ms=0)
    damaged = bytearray(batch(2))
    damaged[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        log.append(batch(1) + bytes(damaged), now_ms=0)
    with pytest.raises(CorruptRecordError):
        log.append(b"", now_ms=0)
    with pytest.raises(InvalidRecordError):
        log.append(encode_batch([b"x"], attributes=0x100), now_ms=0)  # unknown attribute bit
    assert log.next_offset == 1
    assert log.append(batch(1), now_ms=0) == 1


def test_read_boundaries(open_log: OpenLog) -> None:
    log = open_log()
    log.append(batch(5), now_ms=0)
    assert log.read(5, 100) == b""
    with pytest.raises(OffsetOutOfRangeError) as info:
        log.read(6, 100)
    assert (info.value.log_start_offset, info.value.log_end_offset) == (0, 5)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    assert offsets(log.read(3, 1)) == [0, 1, 2, 3, 4]  # the whole first batch, even over max_bytes


def test_a_read_with_no_room_still_returns_the_first_batch() -> None:
    log = PartitionLog.in_memory()
    log.append(batch(3), now_ms=0)
    assert offsets(log.read(0, 0)) == [0, 1, 2]


def test_a_batch_larger_than_a_segment_is_refused(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=200))
    with pytest.raises(RecordListTooLargeError):
        log.append(batch(10), now_ms=0)


def test_roll_by_size_and_reads_across_segments(open_log: OpenLog) -> None:
    one = len(batch(2))
    log = open_log(LogConfig(segment_bytes=3 * one, index_interval_bytes=one))
    for i in range(10):
        log.append(batch(2, start=2 * i), now_ms=0)
    assert [s.base_offset for s in log.segments] == [0, 6, 12, 18]
    assert all(s.size <= 3 * one for s in log.segments)
    assert offsets(log.read(0, 1 << 20)) == list(range(20))
    assert offsets(log.read(5, 4 * one)) == list(range(4, 12))
    assert next(r.value for r in records(log.read(13, 1 << 20))) == b"value-12".ljust(20, b".")
    assert offsets(log.read(7, 1 << 20, end_offset=13)) == list(range(6, 14))


def test_roll_by_age(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_ms=1000))
    log.append(batch(1), now_ms=0)
    log.append(batch(1), now_ms=1000)
    assert len(log.segments) == 1
    log.append(batch(1), now_ms=1001)
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert not log.roll_if_due(1500)
    assert log.roll_if_due(2002)
    assert [s.base_offset for s in log.segments] == [0, 2, 3]
    assert not log.roll_if_due(10_000)  # the new active segment is empty


def test_retention_by_bytes_deletes_whole_oldest_segments(open_log: OpenLog) -> None:
    one = len(batch(2))
    log = open_log(LogConfig(segment_bytes=2 * one, retention_bytes=3 * one))
    for _i in range(8):
        log.append(batch(2), now_ms=0)
    assert [s.base_offset for s in log.segments] == [0, 4, 8, 12]
    assert log.apply_retention(0) == 2
    assert log.log_start_offset == 8
    assert [s.base_offset for s in log.segments] == [8, 12]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(7, 100)
    assert offsets(log.read(8, 1 << 20)) == list(range(8, 16))
    assert log.apply_retention(0) == 0


def test_retention_by_age_rolls_an_expired_active_segment(open_log: OpenLog) -> None:
    log = open_log(LogConfig(retention_ms=1000))
    log.append(batch(2), now_ms=0)
    log.roll(0)
    log.append(batch(2), now_ms=500)
    assert log.apply_retention(1200) == 1  # the first segment expired; the active one has not
    assert log.log_start_offset == 2
    assert log.apply_retention(1501) == 1  # now everything has: roll, then delete
    assert log.log_start_offset == log.next_offset == 4
    assert log.read(4, 100) == b""
    assert log.append(batch(1), now_ms=1600) == 4


def test_damage_is_forgotten_when_retention_deletes_its_segment() -> None:
    fs = FaultFileSystem()
    config = LogConfig(segment_bytes=len(batch(5)))
    log = PartitionLog.open(fs, "/data/t-0", config, now_ms=0)
    log.append(batch(5), now_ms=0)
    log.append(batch(5), now_ms=0)
    log.close()
    inode = fs._file("/data/t-0/00000000000000000000.log")
    inode.data[-3] ^= 1
    inode.durable = bytes(inode.data)
    log = PartitionLog.open(fs, "/data/t-0", config, now_ms=0)
    with pytest.raises(CorruptLogError):
        log.read(0, 1 << 20)
    log.config = LogConfig(segment_bytes=len(batch(5)), retention_bytes=0)
    assert log.apply_retention(0) == 1
    assert offsets(log.read(5, 1 << 20)) == [5, 6, 7, 8, 9]
    log.close()


def test_log_start_is_persisted_and_never_moves_back(open_durable_log: OpenLog) -> None:
    open_log = open_durable_log
    one = len(batch(2))
    config = LogConfig(segment_bytes=2 * one, retention_bytes=2 * one)
    log = open_log(config)
    for _ in range(6):
        log.append(batch(2), now_ms=0)
    log.apply_retention(0)
    start = log.log_start_offset
    assert start == 8
    log.close()
    log = open_log(config.__class__(segment_bytes=2 * one))
    assert log.log_start_offset == start
    assert log.recovery is not None
    assert log.recovery.clean_shutdown
    assert offsets(log.read(start, 1 << 20)) == list(range(8, 12))


def test_reopen_continues_where_the_log_ended(open_durable_log: OpenLog) -> None:
    open_log = open_durable_log
    log = open_log(LogConfig(segment_bytes=400))
    for i in range(20):
        log.append(batch(1, start=i, timestamp=1000 + i), now_ms=0)
    before = log.read(0, 1 << 20)
    log.close()
    log = open_log(LogConfig(segment_bytes=400))
    assert log.read(0, 1 << 20) == before
    assert log.offset_for_timestamp(1010) == 10
    assert log.append(batch(1), now_ms=0) == 20


def test_timestamp_lookup_across_segments(open_log: OpenLog) -> None:
    log = open_log(LogConfig(segment_bytes=300, index_interval_bytes=1))
    for i in range(12):
        log.append(encode_batch([b"x", b"y"], timestamps=[100 * i, 100 * i + 50]), now_ms=0)
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(120) == 3
    assert log.offset_for_timestamp(1150) == 23
    assert log.offset_for_timestamp(1151) is None


def test_flush_jobs_cover_appends_made_before_them(open_log: OpenLog) -> None:
    log = open_log()
    log.append(batch(3), now_ms=0)
    if not durable(open_log):
        assert log.prepare_flush() is None
        assert log.flushed_offset == 3
        return
    assert log.flushed_offset == 0
    job = log.prepare_flush()
    assert job is not None
    assert job.target_offset == 3
    log.append(batch(2), now_ms=0)  # arrives while the fsync runs
    job.run()
    log.complete_flush(job)
    assert log.flushed_offset == 3
    assert log.flush() == 5
    assert log.prepare_flush() is None


def test_reads_can_stop_at_the_flushed_offset(open_log: OpenLog) -> None:
    log = open_log()
    log.append(batch(2), now_ms=0)
    log.flush()
    log.append(batch(2), now_ms=0)
    assert offsets(log.read(0, 1 << 20, end_offset=log.flushed_offset)) == (
        [0, 1] if durable(open_log) else [0, 1, 2, 3]
    )


def test_a_failed_fsync_makes_the_log_read_only_until_reopened(tmp_path: Path) -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, "/data/t-0", now_ms=0)
    log.append(batch(2), now_ms=0)
    log.flush()
    log.append(batch(2), now_ms=0)
    fs.fail("fsync", error=errno.EIO)
    job = log.prepare_flush()
    assert job is not None
    with pytest.raises(OSError):
        job.run()
    log.fail_flush(job, OSError(errno.EIO, "injected"))
    assert "fsync failed" in (log.read_only_reason or "")
    assert log.flushed_offset == 2  # never advanced past what the failed fsync covered
    with pytest.raises(LogReadOnlyError):
        log.append(batch(1), now_ms=0)
    assert log.prepare_flush() is None  # no retry-then-ack
    assert offsets(log.read(0, 1 << 20)) == [0, 1, 2, 3]  # reads go on
    log.close()
    reopened = PartitionLog.open(fs, "/data/t-0", now_ms=0)
    assert reopened.recovery is not None
    assert not reopened.recovery.clean_shutdown
    assert reopened.append(batch(1), now_ms=0) == 4
    reopened.close()


def test_no_later_flush_counts_once_an_fsync_failed() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, "/data/t-0", now_ms=0)
    log.append(batch(5), now_ms=0)
    first = log.prepare_flush()
    log.append(batch(5), now_ms=0)
    second = log.prepare_flush()
    assert first is not None and second is not None
    fs.fail("fsync", error=errno.EIO)
    with pytest.raises(OSError):
        first.run()
    log.fail_flush(first, OSError(errno.EIO, "injected"))
    second.run()  # "succeeds", as Linux may report after dropping the dirty pages
    log.complete_flush(second)
    assert log.flushed_offset == 0
    log.close()


def test_flush_runs_in_a_worker_thread_while_the_log_rolls(tmp_path: Path) -> None:
    import threading

    log = PartitionLog.open(OsFileSystem(), str(tmp_path / "t-0"), LogConfig(segment_bytes=300), now_ms=0)
    log.append(batch(2), now_ms=0)
    job = log.prepare_flush()
    assert job is not None
    log.roll(0)  # closes the handle the job was prepared on; the job holds its own
    worker = threading.Thread(target=job.run)
    worker.start()
    worker.join()
    log.complete_flush(job)
    assert log.flushed_offset == 2
    log.close()


def test_closed_log_refuses_writes(open_log: OpenLog) -> None:
    log = open_log()
    log.close()
    with pytest.raises(LogReadOnlyError, match="closed"):
        log.append(batch(1), now_ms=0)


def test_flush_roll_and_retention_after_close_are_harmless() -> None:
    log = PartitionLog.open(FaultFileSystem(), "/data/t-0", now_ms=0)
    log.append(batch(1), now_ms=0)
    log.close()
    assert log.flush() == 1
    assert log.prepare_flush() is None
    assert log.roll_if_due(10**12) is False
    assert log.apply_retention(10**12) == 0


def test_files_are_kafka_layout(tmp_path: Path) -> None:
    directory = tmp_path / "orders-3"
    log = PartitionLog.open(OsFileSystem(), str(directory), LogConfig(segment_bytes=300), now_ms=0)
    for _ in range(4):
        log.append(batch(2), now_ms=0)
    log.close()
    names = sorted(os.listdir(directory))
    assert names[:3] == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]
    assert "clean-shutdown" in names
    assert "log-start-offset" in names

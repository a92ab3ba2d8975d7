"""Regression tests for defects a review of the storage engine found (one test each)."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from logbroker.errors import CorruptLogError
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import MUTATING_OPS, FaultFileSystem, SimulatedCrash
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog
from logbroker.storage.verify import verify_paths
from tests.helpers import batch, offsets

DIR = "/data/t-0"


def test_a_log_start_past_the_end_deletes_nothing() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, LogConfig(segment_bytes=400), now_ms=0)
    for i in range(12):
        log.append(batch(2, start=2 * i), now_ms=0)
    log.close()
    handle = fs.open(DIR + "/log-start-offset", "w")
    handle.append([b"9000000\n"])
    handle.close()
    reopened = PartitionLog.open(fs, DIR, LogConfig(segment_bytes=400), now_ms=0)
    assert reopened.log_start_offset == 0
    assert offsets(reopened.read(0, 1 << 20)) == list(range(24))
    assert reopened.recovery is not None and reopened.recovery.removed_files == []
    reopened.close()


def _shift_middle_index_entry(directory: str) -> None:
    path = Path(directory) / "00000000000000000000.index"
    raw = bytearray(path.read_bytes())
    relative, position = struct.unpack_from(">ii", raw, 16)
    struct.pack_into(">ii", raw, 16, relative, position + 1)  # still increasing: passes the load checks
    path.write_bytes(bytes(raw))


def test_a_wrong_index_entry_is_never_reported_as_data_damage(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=200)
    log = PartitionLog.open(OsFileSystem(), str(tmp_path), config, now_ms=0)
    for i in range(20):
        log.append(batch(1, start=i, timestamp=1000 + i), now_ms=0)
    log.roll(0)
    log.append(batch(1), now_ms=0)
    log.close()
    _shift_middle_index_entry(str(tmp_path))
    log = PartitionLog.open(OsFileSystem(), str(tmp_path), config, now_ms=0)
    assert offsets(log.read(0, 600))[0] == 0
    assert offsets(log.read(6, 1 << 20)) == list(range(6, 21))
    assert log.offset_for_timestamp(1007) == 7
    assert log.damage is None
    log.close()
    assert verify_paths([str(tmp_path)]).ok


def test_timestamp_lookup_survives_a_wrong_index_entry(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=200)
    log = PartitionLog.open(OsFileSystem(), str(tmp_path), config, now_ms=0)
    for i in range(20):
        log.append(batch(1, start=i, timestamp=1000 + i), now_ms=0)
    log.roll(0)
    log.append(batch(1, timestamp=5000), now_ms=0)
    log.close()
    _shift_middle_index_entry(str(tmp_path))
    log = PartitionLog.open(OsFileSystem(), str(tmp_path), config, now_ms=0)
    assert log.offset_for_timestamp(1007) == 7
    assert log.damage is None
    log.close()


def test_index_files_are_replaced_atomically() -> None:
    """A crash while recovery rewrites a segment's index files leaves whole files behind."""
    config = LogConfig(index_interval_bytes=200)

    def build() -> FaultFileSystem:
        fs = FaultFileSystem()
        log = PartitionLog.open(fs, DIR, config, now_ms=0)
        for i in range(20):
            log.append(batch(1, timestamp=2000 - i, start=i), now_ms=0)
        log.roll(0)
        log.append(batch(1, timestamp=5000), now_ms=0)
        log.close()
        fs.unlink(DIR + "/00000000000000000000.index")  # a lost index: rebuilt on the next open
        return fs

    for k in range(16):
        fs = build()
        fs.crash_after(k)
        try:
            PartitionLog.open(fs, DIR, config, now_ms=0)
        except SimulatedCrash:
            pass
        fs.clear_faults()  # a crash of the process: the page cache survives
        log = PartitionLog.open(fs, DIR, config, now_ms=0)
        assert log.offset_for_timestamp(1990) == 0, f"crash at step {k}"
        assert log.segments[0].max_timestamp == 2000
        log.close()


def test_no_flush_counts_after_an_fsync_failed() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, now_ms=0)
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


def test_damage_is_forgotten_when_retention_deletes_its_segment() -> None:
    fs = FaultFileSystem()
    config = LogConfig(segment_bytes=len(batch(5)))
    log = PartitionLog.open(fs, DIR, config, now_ms=0)
    log.append(batch(5), now_ms=0)
    log.append(batch(5), now_ms=0)
    log.close()
    inode = fs._file(DIR + "/00000000000000000000.log")
    inode.data[-3] ^= 1
    inode.durable = bytes(inode.data)
    log = PartitionLog.open(fs, DIR, config, now_ms=0)
    with pytest.raises(CorruptLogError):
        log.read(0, 1 << 20)
    log.config = LogConfig(segment_bytes=len(batch(5)), retention_bytes=0)
    assert log.apply_retention(0) == 1
    assert offsets(log.read(5, 1 << 20)) == [5, 6, 7, 8, 9]
    log.close()


@pytest.mark.parametrize(
    ("op", "n"), [(op, n) for op in ("open", "read", "fsync", "write") for n in range(14)]
)
def test_a_failed_open_leaks_no_handle(op: str, n: int) -> None:
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


@pytest.mark.parametrize(
    "marker", [b'{"segment": 1e999, "size": 0, "next_offset": 0}', b"[" * 50_000, b"\xff\xfe"]
)
def test_a_garbled_clean_shutdown_marker_is_ignored(marker: bytes) -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    log.append(batch(2), now_ms=0)
    log.close()
    handle = fs.open(DIR + "/clean-shutdown", "w")
    handle.append([marker])
    handle.close()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    assert log.recovery is not None and not log.recovery.clean_shutdown
    assert offsets(log.read(0, 100)) == [0, 1]
    log.close()


def test_a_read_with_no_room_still_returns_the_first_batch() -> None:
    log = PartitionLog.in_memory()
    log.append(batch(3), now_ms=0)
    assert offsets(log.read(0, 0)) == [0, 1, 2]


def test_mid_file_damage_in_the_active_segment_is_not_truncated() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    for i in range(10):
        log.append(batch(1, start=i), now_ms=0)
    assert log.flush() == 10
    size = log.segments[-1].size // 10
    inode = fs._file(DIR + "/00000000000000000000.log")
    inode.data[2 * size + 70] ^= 1  # a bit flipped at rest inside the third batch
    inode.durable = bytes(inode.data)
    fs.power_loss()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    assert log.recovery is not None
    assert log.recovery.truncations == [] and len(log.recovery.damage) == 1
    assert log.next_offset == 10
    assert offsets(log.read(0, 1 << 20)) == [0, 1]
    with pytest.raises(CorruptLogError):
        log.read(2, 1 << 20)
    assert log.append(batch(1), now_ms=0) == 10  # no offset is handed out twice
    log.close()


def test_mid_file_damage_then_a_torn_tail() -> None:
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    for i in range(10):
        log.append(batch(1, start=i), now_ms=0)
    log.flush()
    size = log.segments[-1].size // 10
    inode = fs._file(DIR + "/00000000000000000000.log")
    inode.data[2 * size + 70] ^= 1
    del inode.data[-5:]  # and the last batch torn
    inode.durable = bytes(inode.data)
    fs.power_loss()
    log = PartitionLog.open(fs, DIR, now_ms=0)
    assert log.recovery is not None
    assert [t.bytes_removed for t in log.recovery.truncations] == [size - 5]
    assert log.next_offset == 9
    log.close()


def test_calls_after_close_are_harmless() -> None:
    log = PartitionLog.open(FaultFileSystem(), DIR, now_ms=0)
    log.append(batch(1), now_ms=0)
    log.close()
    assert log.flush() == 1
    assert log.prepare_flush() is None
    assert log.roll_if_due(10**12) is False
    assert log.apply_retention(10**12) == 0


def test_mutating_ops_are_all_counted() -> None:
    assert set(MUTATING_OPS) >= {"write", "fsync", "rename", "unlink", "fsync_dir"}

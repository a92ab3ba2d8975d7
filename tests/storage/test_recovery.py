"""Opening a log after a crash or damage: a table of corruption cases on real files, and damage
planted through the FaultFS double (torn tails, flipped bits, garbled markers, wrong index entries)."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from logbroker.errors import CorruptLogError
from logbroker.records import validate_batch
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog
from logbroker.storage.verify import verify_paths
from tests.helpers import batch, offsets

FS = OsFileSystem()
SEGMENT0 = "00000000000000000000.log"
DIR = "/data/t-0"  # on a FaultFileSystem


def write_log(directory: Path, batches: int, config: LogConfig | None = None, *, clean: bool = True) -> bytes:
    """A log of `batches` two-record batches; returns all its bytes in offset order."""
    log = PartitionLog.open(FS, str(directory), config, now_ms=0)
    for i in range(batches):
        log.append(batch(2, start=2 * i, timestamp=1000 + i), now_ms=0)
    data = log.read(0, 1 << 30)
    if clean:
        log.close()
    else:
        log.flush()
        for segment in log.segments:
            segment.close()  # the process "dies": no seal, no marker
    return data


def batch_ends(data: bytes) -> list[int]:
    ends, pos = [], 0
    while pos < len(data):
        pos += validate_batch(data, pos).size
        ends.append(pos)
    return ends


def test_torn_tail_is_cut_at_every_byte_of_the_last_batches(tmp_path: Path) -> None:
    full = write_log(tmp_path / "original", 8, clean=False)
    ends = batch_ends(full)
    for cut in range(ends[-4], len(full) + 1):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        (directory / SEGMENT0).write_bytes(full[:cut])
        (directory / "log-start-offset").write_text("0\n")
        kept = max(e for e in [0, *ends] if e <= cut)
        log = PartitionLog.open(FS, str(directory), now_ms=0)
        report = log.recovery
        assert report is not None
        assert not report.clean_shutdown
        if kept == cut:
            assert report.truncations == []
        else:
            [truncation] = report.truncations
            assert (truncation.position, truncation.bytes_removed) == (kept, cut - kept)
            assert truncation.offset == 2 * ends.index(kept) + 2 if kept else truncation.offset == 0
            assert truncation.path.endswith(SEGMENT0)
        assert log.read(0, 1 << 30) == full[:kept]
        expected_next = 2 * (ends.index(kept) + 1) if kept else 0
        assert log.next_offset == expected_next
        log.flush()
        for segment in log.segments:
            segment.close()
        assert os.path.getsize(directory / SEGMENT0) == kept
        again = PartitionLog.open(FS, str(directory), now_ms=0)  # recovery is idempotent
        assert again.recovery is not None
        assert again.recovery.truncations == []
        assert again.append(batch(1), now_ms=0) == expected_next
        again.close()


@pytest.mark.parametrize("seed", range(10))
def test_garbage_after_the_tail_is_cut(tmp_path: Path, seed: int) -> None:
    full = write_log(tmp_path, 5, clean=False)
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randint(1, 512))
    with open(tmp_path / SEGMENT0, "ab") as f:
        f.write(garbage)
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.recovery is not None
    [truncation] = log.recovery.truncations
    assert (truncation.position, truncation.bytes_removed, truncation.offset) == (len(full), len(garbage), 10)
    assert "truncated" in log.recovery.summary()
    assert log.read(0, 1 << 30) == full
    log.close()


def _closed_segment_log(directory: Path) -> tuple[bytes, LogConfig]:
    config = LogConfig(segment_bytes=700, index_interval_bytes=200)
    data = write_log(directory, 30, config)
    return data, config


def _consume_all(log: PartitionLog) -> tuple[list[int], CorruptLogError | None]:
    """Read sequentially from the start, as a consumer does, until the end or an error."""
    got: list[int] = []
    offset = log.log_start_offset
    while offset < log.next_offset:
        try:
            data = log.read(offset, 500)
        except CorruptLogError as exc:
            return got, exc
        read = [o for o in offsets(data) if o >= offset]
        got.extend(read)
        offset = read[-1] + 1
    return got, None


@pytest.mark.parametrize("seed", range(50))
def test_a_flipped_bit_in_a_closed_segment_is_found_and_never_served(tmp_path: Path, seed: int) -> None:
    _data, config = _closed_segment_log(tmp_path)
    rng = random.Random(seed)
    closed = sorted(n for n in os.listdir(tmp_path) if n.endswith(".log"))[:-1]
    name = rng.choice(closed)
    segment_bytes = bytearray((tmp_path / name).read_bytes())
    starts = [0, *batch_ends(bytes(segment_bytes))[:-1]]
    while True:
        position = rng.randrange(len(segment_bytes))
        batch_start = max(s for s in starts if s <= position)
        if not 12 <= position - batch_start < 16:  # partitionLeaderEpoch is outside the CRC by design
            break
    segment_bytes[position] ^= 1 << rng.randrange(8)
    (tmp_path / name).write_bytes(bytes(segment_bytes))
    damaged_offset = int(name[:20]) + 2 * starts.index(batch_start)

    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    got, error = _consume_all(log)
    assert error is not None, f"flip at byte {position} of {name} was served"
    assert got == list(range(damaged_offset))
    assert error.offset == damaged_offset
    assert error.path.endswith(name)
    assert error.position == batch_start
    with pytest.raises(CorruptLogError):
        log.read(damaged_offset + 1 if damaged_offset + 1 < log.next_offset else damaged_offset, 100)
    log.close()


@pytest.mark.parametrize(
    "damage",
    ["delete", "empty", "garbage", "truncate", "wrong-entries", "delete-timeindex", "garbage-timeindex"],
)
def test_damaged_index_files_are_rebuilt(tmp_path: Path, damage: str) -> None:
    data, config = _closed_segment_log(tmp_path)
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    lookups = {ts: log.offset_for_timestamp(ts) for ts in range(995, 1035, 3)}
    log.close()
    target = sorted(n for n in os.listdir(tmp_path) if n.endswith(".index"))[1]
    path = tmp_path / target
    if damage == "delete":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(random.Random(1).randbytes(64))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-3])
    elif damage == "wrong-entries":
        raw = bytearray(path.read_bytes())
        raw[-1] ^= 0x01  # the last entry points into the middle of a batch
        path.write_bytes(bytes(raw))
    elif damage == "delete-timeindex":
        path.with_suffix(".timeindex").unlink()
    else:
        path.with_suffix(".timeindex").write_bytes(b"\xff" * 24)
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    assert log.recovery is not None
    assert log.recovery.rebuilt_indexes == [str(path.with_suffix(".log"))]
    assert log.recovery.damage == []
    assert log.read(0, 1 << 30) == data
    assert {ts: log.offset_for_timestamp(ts) for ts in lookups} == lookups
    for offset in range(0, 60, 7):
        assert offsets(log.read(offset, 300))[0] <= offset
    log.close()
    assert path.exists()  # written again


def test_an_index_pointing_into_a_batch_is_not_reported_as_damage(tmp_path: Path) -> None:
    _data, config = _closed_segment_log(tmp_path)
    target = sorted(n for n in os.listdir(tmp_path) if n.endswith(".index"))[0]
    raw = bytearray((tmp_path / target).read_bytes())
    raw[11] ^= 0x04  # entry 1's position, still increasing: passes the load checks
    (tmp_path / target).write_bytes(bytes(raw))
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    got, error = _consume_all(log)
    assert error is None
    assert got == list(range(60))
    log.close()


def test_a_clean_shutdown_skips_the_scan(tmp_path: Path) -> None:
    write_log(tmp_path, 10)
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.recovery is not None
    assert log.recovery.clean_shutdown
    assert log.recovery.bytes_scanned == 0
    assert not (tmp_path / "clean-shutdown").exists()  # removed while the log is open
    log.close()
    assert (tmp_path / "clean-shutdown").exists()


def test_a_marker_that_does_not_match_the_files_is_not_trusted(tmp_path: Path) -> None:
    full = write_log(tmp_path, 6)
    with open(tmp_path / SEGMENT0, "ab") as f:
        f.write(batch(1)[:30])
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.recovery is not None
    assert not log.recovery.clean_shutdown
    assert [t.bytes_removed for t in log.recovery.truncations] == [30]
    assert log.read(0, 1 << 30) == full
    log.close()


def test_leftovers_are_cleaned_and_unknown_files_left_alone(tmp_path: Path) -> None:
    write_log(tmp_path, 4)
    (tmp_path / "log-start-offset.tmp").write_text("12")
    (tmp_path / "00000000000000000099.index").write_bytes(b"\x00" * 8)
    (tmp_path / "notes.txt").write_text("mine")
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.recovery is not None
    removed = sorted(os.path.basename(p) for p in log.recovery.removed_files)
    assert removed == ["00000000000000000099.index", "log-start-offset.tmp"]
    assert (tmp_path / "notes.txt").exists()
    log.close()


def test_segments_below_the_log_start_finish_their_deletion(tmp_path: Path) -> None:
    _data, config = _closed_segment_log(tmp_path)
    bases = sorted(int(n[:20]) for n in os.listdir(tmp_path) if n.endswith(".log"))
    # A crash after retention saved the new log start but before it deleted the files:
    (tmp_path / "log-start-offset").write_text(f"{bases[2]}\n")
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    assert log.log_start_offset == bases[2]
    assert next(s.base_offset for s in log.segments) == bases[2]
    assert not (tmp_path / f"{bases[0]:020d}.log").exists()
    log.close()


def test_an_unreadable_log_start_file_falls_back_to_the_first_segment(tmp_path: Path) -> None:
    write_log(tmp_path, 3)
    (tmp_path / "log-start-offset").write_text("not a number")
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.log_start_offset == 0
    assert log.recovery is not None
    assert any("log-start-offset" in n for n in log.recovery.notes)
    log.close()


def test_a_log_start_past_the_end_is_not_trusted(tmp_path: Path) -> None:
    write_log(tmp_path, 3)
    (tmp_path / "log-start-offset").write_text("1000\n")
    log = PartitionLog.open(FS, str(tmp_path), now_ms=0)
    assert log.log_start_offset == 0
    assert offsets(log.read(0, 1 << 20)) == list(range(6))
    log.close()


def test_a_closed_segment_missing_its_tail_is_damage(tmp_path: Path) -> None:
    _data, config = _closed_segment_log(tmp_path)
    first = tmp_path / SEGMENT0
    ends = batch_ends(first.read_bytes())
    first.write_bytes(first.read_bytes()[: ends[-2]])  # the last batch of segment 0 is gone
    (tmp_path / "00000000000000000000.index").unlink()
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    assert log.recovery is not None
    assert len(log.recovery.damage) == 1
    missing = 2 * (len(ends) - 1)
    assert f"offset {missing}" in log.recovery.damage[0]
    got, error = _consume_all(log)
    assert got == list(range(missing))
    assert error is not None
    assert error.offset == missing
    log.close()


def test_a_new_directory_gets_an_empty_log(tmp_path: Path) -> None:
    log = PartitionLog.open(FS, str(tmp_path / "a" / "b-0"), now_ms=0)
    assert (log.log_start_offset, log.next_offset) == (0, 0)
    assert sorted(os.listdir(tmp_path / "a" / "b-0")) == [SEGMENT0, "log-start-offset"]
    log.close()


def test_a_log_start_past_the_end_deletes_no_segment() -> None:
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
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    for i in range(20):
        log.append(batch(1, start=i, timestamp=1000 + i), now_ms=0)
    log.roll(0)
    log.append(batch(1), now_ms=0)
    log.close()
    _shift_middle_index_entry(str(tmp_path))
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    assert offsets(log.read(0, 600))[0] == 0
    assert offsets(log.read(6, 1 << 20)) == list(range(6, 21))
    assert log.offset_for_timestamp(1007) == 7
    assert log.damage is None
    log.close()
    assert verify_paths([str(tmp_path)]).ok


def test_a_timestamp_lookup_survives_a_wrong_index_entry(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=200)
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    for i in range(20):
        log.append(batch(1, start=i, timestamp=1000 + i), now_ms=0)
    log.roll(0)
    log.append(batch(1, timestamp=5000), now_ms=0)
    log.close()
    _shift_middle_index_entry(str(tmp_path))
    log = PartitionLog.open(FS, str(tmp_path), config, now_ms=0)
    assert log.offset_for_timestamp(1007) == 7
    assert log.damage is None
    log.close()


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


def test_mid_file_damage_then_a_torn_tail_cuts_only_the_torn_batch() -> None:
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

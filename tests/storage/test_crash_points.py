"""Crash at every step of every multi-step operation, then lose power, then reopen.

The FaultFS seam raises `SimulatedCrash` at the k-th mutating file operation and then forgets
everything not fsynced (optionally tearing unsynced tails), or, for a crash of the process alone,
keeps the page cache. For every k the reopened log must be
in the state before the operation or the state after it: same records, a log start that never
moved back, no stray temp files, and a log that takes the next append at the right offset.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import MUTATING_OPS, FaultFileSystem, SimulatedCrash
from logbroker.storage.log import PartitionLog
from tests.helpers import batch, offsets

DIR = "/data/orders-0"
ONE = len(batch(2))
CONFIG = LogConfig(segment_bytes=3 * ONE, index_interval_bytes=ONE, retention_bytes=4 * ONE)


def prepared(fs: FaultFileSystem, batches: int = 10) -> PartitionLog:
    log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    for i in range(batches):
        log.append(batch(2, start=2 * i), now_ms=0)
    log.flush()
    return log


def state(log: PartitionLog) -> tuple[int, list[int]]:
    return log.log_start_offset, offsets(log.read(log.log_start_offset, 1 << 30))


def mutations(fs: FaultFileSystem) -> int:
    return sum(fs.counts[op] for op in MUTATING_OPS)


def roll(log: PartitionLog) -> None:
    log.roll(0)


def retention(log: PartitionLog) -> None:
    log.apply_retention(0)


def close(log: PartitionLog) -> None:
    log.close()


def append_and_flush(log: PartitionLog) -> None:
    log.append(batch(2, start=100), now_ms=0)
    log.flush()


def append_with_roll(log: PartitionLog) -> None:
    log.append(batch(2, start=100), now_ms=0)  # the active segment is full: rolls first
    log.flush()


SCENARIOS: dict[str, tuple[Callable[[PartitionLog], None], int]] = {
    "roll": (roll, 10),
    "retention": (retention, 10),
    "close": (close, 10),
    "append+flush": (append_and_flush, 10),
    "append+roll": (append_with_roll, 9),
}


@pytest.mark.parametrize("tear", [False, True], ids=["clean-loss", "torn-loss"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_crash_at_every_step(name: str, tear: bool) -> None:
    operation, batches = SCENARIOS[name]
    # A dry run tells the states before and after and how many steps the operation takes.
    fs = FaultFileSystem()
    log = prepared(fs, batches)
    before = state(log)
    start = mutations(fs)
    operation(log)
    steps = mutations(fs) - start
    after = state(PartitionLog.open(fs, DIR, CONFIG, now_ms=0)) if name == "close" else state(log)
    assert steps > 0

    for k in range(steps + 1):
        fs = FaultFileSystem(seed=k)
        log = prepared(fs, batches)
        fs.crash_after(k)
        try:
            operation(log)
        except SimulatedCrash:
            pass
        fs.power_loss(tear=tear)
        reopened = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
        got = state(reopened)
        assert got in (before, after), f"crash at step {k} of {name}: {got} is neither {before} nor {after}"
        assert got[0] >= before[0], "the log start moved back"
        assert not [n for n in fs.list_dir(DIR) if n.endswith(".tmp")]
        next_offset = reopened.next_offset
        assert reopened.append(batch(1), now_ms=0) == next_offset
        reopened.close()


@pytest.mark.parametrize("k", range(12))
def test_crash_while_recovering_from_a_crash(k: int) -> None:
    """Faults during recovery from faults: a crash at any step of an unclean open is harmless."""
    fs = FaultFileSystem()
    log = prepared(fs, 8)
    log.append(batch(2, start=100), now_ms=0)  # not flushed: may be torn
    expected = state(log)[1]
    fs.power_loss(tear=True)
    fs.crash_after(k)
    try:
        PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    except SimulatedCrash:
        pass
    fs.power_loss(tear=True)
    log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    _start, got = state(log)
    assert got == expected[: len(got)]
    assert len(got) >= 16
    assert len(got) % 2 == 0


@pytest.mark.parametrize("seed", range(25))
def test_power_loss_keeps_every_flushed_record(seed: int) -> None:
    """fsync=always in miniature: whatever was flushed when power went is there after it."""
    import random

    rng = random.Random(seed)
    fs = FaultFileSystem(seed=seed)
    log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    written: list[int] = []
    flushed = 0
    for step in range(rng.randint(1, 40)):
        base = log.append(batch(2, start=2 * step), now_ms=0)
        written.extend([base, base + 1])
        if rng.random() < 0.4:
            flushed = log.flush()
        if rng.random() < 0.1:
            log.apply_retention(0)
    start = log.log_start_offset
    fs.power_loss(tear=rng.random() < 0.5)
    log = PartitionLog.open(fs, DIR, CONFIG, now_ms=0)
    got_start, got = state(log)
    assert got_start >= start
    assert got == list(range(got_start, got_start + len(got)))  # gap-free, never reused
    assert got_start + len(got) >= flushed  # nothing flushed was lost
    assert got_start + len(got) <= len(written)
    log.close()


@pytest.mark.parametrize("k", range(16))
def test_a_crash_while_recovery_rewrites_an_index_leaves_whole_index_files(k: int) -> None:
    """Index files are replaced atomically: a crash of the process (the page cache survives) at
    any step of rebuilding a lost index leaves files the next open can use."""
    config = LogConfig(index_interval_bytes=200)
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, DIR, config, now_ms=0)
    for i in range(20):
        log.append(batch(1, timestamp=2000 - i, start=i), now_ms=0)
    log.roll(0)
    log.append(batch(1, timestamp=5000), now_ms=0)
    log.close()
    fs.unlink(DIR + "/00000000000000000000.index")  # a lost index: rebuilt on the next open
    fs.crash_after(k)
    try:
        PartitionLog.open(fs, DIR, config, now_ms=0)
    except SimulatedCrash:
        pass
    fs.clear_faults()
    log = PartitionLog.open(fs, DIR, config, now_ms=0)
    assert log.offset_for_timestamp(1990) == 0
    assert log.segments[0].max_timestamp == 2000
    log.close()

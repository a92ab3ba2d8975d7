"""The test double of the file-system seam must itself behave as documented."""

import errno

import pytest

from logbroker.storage.fault_fs import MUTATING_OPS, FaultFileSystem, SimulatedCrash
from logbroker.storage.fs import write_atomic


def test_unsynced_data_and_entries_are_lost_on_power_loss() -> None:
    fs = FaultFileSystem()
    fs.make_dirs("/d")
    handle = fs.open("/d/a", "a")
    handle.append([b"durable"])
    handle.fsync()
    fs.fsync_dir("/d")
    handle.append([b"-lost"])
    other = fs.open("/d/b", "a")  # entry never made durable
    other.append([b"x"])
    other.fsync()
    fs.power_loss()
    assert fs.read_file("/d/a") == b"durable"
    assert not fs.exists("/d/b")
    assert fs.open_handles == 0
    with pytest.raises(OSError, match="Bad file"):
        handle.append([b"dead handle"])


def test_torn_power_loss_keeps_a_prefix_of_the_unsynced_tail() -> None:
    seen = set()
    for seed in range(20):
        fs = FaultFileSystem(seed=seed)
        fs.make_dirs("/d")
        handle = fs.open("/d/a", "a")
        fs.fsync_dir("/d")
        handle.append([b"0123"])
        handle.fsync()
        handle.append([b"456789"])
        fs.power_loss(tear=True)
        data = fs.read_file("/d/a")
        assert b"0123456789".startswith(data)
        assert len(data) >= 4
        seen.add(len(data))
    assert len(seen) > 3


def test_unlink_and_rename_need_a_directory_fsync() -> None:
    fs = FaultFileSystem()
    fs.make_dirs("/d")
    write_atomic(fs, "/d/meta", b"one")
    fs.unlink("/d/meta")
    fs.power_loss()
    assert fs.read_file("/d/meta") == b"one"  # the unlink was never made durable
    write_atomic(fs, "/d/meta", b"two")
    fs.power_loss()
    assert fs.read_file("/d/meta") == b"two"
    assert fs.list_dir("/d") == ["meta"]


def test_faults_fire_after_n_calls_and_writes_are_partial() -> None:
    fs = FaultFileSystem()
    fs.make_dirs("/d")
    handle = fs.open("/d/a", "a")
    fs.fail("write", after=1, error=errno.ENOSPC)
    handle.append([b"ok"])
    with pytest.raises(OSError) as info:
        handle.append([b"12345678"])
    assert info.value.errno == errno.ENOSPC
    assert fs.read_file("/d/a") == b"ok1234"  # half of the failed write landed
    handle.append([b"!"])  # the fault fired once
    fs.fail("fsync", times=None)
    for _ in range(3):
        with pytest.raises(OSError):
            handle.fsync()
    assert fs.counts["fsync"] == 3


def test_capacity_fills_up_with_enospc() -> None:
    fs = FaultFileSystem(capacity=10)
    fs.make_dirs("/d")
    handle = fs.open("/d/a", "a")
    handle.append([b"12345678"])
    with pytest.raises(OSError) as info:
        handle.append([b"abcd"])
    assert info.value.errno == errno.ENOSPC
    assert fs.read_file("/d/a") == b"12345678ab"


def test_crash_after_n_mutating_operations() -> None:
    fs = FaultFileSystem()
    fs.make_dirs("/d")
    fs.crash_after(2)
    handle = fs.open("/d/a", "a")  # 1: create
    handle.append([b"x"])  # 2: write
    with pytest.raises(SimulatedCrash):
        handle.fsync()  # 3: crashes before it runs
    fs.power_loss()
    assert not fs.exists("/d/a")


def test_handles_are_counted() -> None:
    fs = FaultFileSystem()
    fs.make_dirs("/d")
    handle = fs.open("/d/a", "a")
    twin = handle.dup()
    assert fs.open_handles == 2
    twin.close()
    handle.close()
    handle.close()
    assert fs.open_handles == 0


def test_torn_power_loss_keeps_a_prefix_of_directory_changes() -> None:
    outcomes = set()
    for seed in range(30):
        fs = FaultFileSystem(seed=seed)
        fs.make_dirs("/d")
        for name in "abc":
            fs.open(f"/d/{name}", "a").close()
        fs.power_loss(tear=True)
        names = "".join(sorted(fs.list_dir("/d")))
        assert names in ("", "a", "ab", "abc")  # in order, never "b" without "a"
        outcomes.add(names)
    assert len(outcomes) == 4


def test_the_operations_counted_as_mutations_include_every_write_fsync_rename_and_unlink() -> None:
    assert set(MUTATING_OPS) >= {"write", "fsync", "rename", "unlink", "fsync_dir"}

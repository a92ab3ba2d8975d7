"""Idempotent producers in the broker core: Kafka's sequence rules, duplicates answered with their
original offsets, and producer state and producer ids that survive restarts, crashes and power loss.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from logbroker.broker.broker import Broker, BrokerOptions, FsyncPolicy, ProduceResult
from logbroker.broker.producer_state import (
    BATCHES_KEPT,
    PRODUCER_ID_BLOCK,
    PRODUCER_ID_EXPIRATION_MS,
    ProducerStateTable,
    SnapshotError,
)
from logbroker.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    StorageError,
    for_code,
)
from logbroker.records import encode_batch, iter_records
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import MUTATING_OPS, FaultFileSystem, SimulatedCrash
from logbroker.storage.fs import OsFileSystem
from logbroker.storage.log import PartitionLog
from logbroker.storage.partition_dir import PRODUCER_STATE_FILE
from tests.helpers import batch

NOW = 1_767_225_600_000
DATA = "/data"
MAX_SEQUENCE = (1 << 31) - 1


def idempotent(
    count: int = 1, *, seq: int = 0, pid: int = 7, epoch: int = 0, tag: str = "", timestamp: int = NOW
) -> bytes:
    """A batch of `count` records from producer `pid`, starting at sequence `seq`."""
    values = [f"{tag}p{pid}e{epoch}s{seq}+{i}".encode() for i in range(count)]
    return encode_batch(values, timestamp=timestamp, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def values(broker: Broker, topic: str = "t", partition: int = 0) -> list[bytes | None]:
    log = broker.log(topic, partition)
    return [r.value for r in iter_records(log.read(log.log_start_offset, 1 << 30))]


@pytest.fixture(params=["memory", "file"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    if request.param == "memory":
        made = Broker.in_memory(now_ms=NOW)
    else:
        made = Broker.open(str(tmp_path / "data"), now_ms=NOW)
    made.create_topic("t", now_ms=NOW)
    return made


def produce(broker: Broker, data: bytes, topic: str = "t") -> ProduceResult:
    return broker.produce(topic, 0, data, now_ms=NOW)


def open_fault_broker(fs: FaultFileSystem, fsync: FsyncPolicy | None = None) -> Broker:
    return Broker.open(DATA, BrokerOptions(fsync=fsync or FsyncPolicy()), fs=fs, now_ms=NOW)


def flush(broker: Broker) -> None:
    for _, log in broker.take_dirty():
        log.flush()


# -- the rules -----------------------------------------------------------------------------------


def test_the_error_codes_are_kafkas() -> None:
    assert (OutOfOrderSequenceError.code, OutOfOrderSequenceError.name) == (
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
    )
    assert (InvalidProducerEpochError.code, InvalidProducerEpochError.name) == (47, "INVALID_PRODUCER_EPOCH")
    assert for_code(45) is OutOfOrderSequenceError
    assert for_code(47) is InvalidProducerEpochError


def test_a_retry_of_each_of_the_last_five_batches_gets_its_original_offsets(broker: Broker) -> None:
    sent = []
    seq = 0
    for count in range(1, BATCHES_KEPT + 1):
        data = idempotent(count, seq=seq)
        sent.append((data, produce(broker, data)))
        seq += count
    stored = values(broker)
    end = broker.log("t", 0).next_offset
    assert end == 15
    for data, original in reversed(sent):
        retry = produce(broker, data)
        assert retry.duplicate
        assert not original.duplicate
        assert (retry.base_offset, retry.next_offset) == (original.base_offset, original.next_offset)
    assert broker.log("t", 0).next_offset == end
    assert values(broker) == stored
    assert produce(broker, idempotent(seq=seq)).base_offset == end  # the next one still goes on


def test_a_retry_older_than_the_last_five_batches_is_out_of_order(broker: Broker) -> None:
    sent = [idempotent(seq=seq) for seq in range(BATCHES_KEPT + 1)]
    for data in sent:
        produce(broker, data)
    with pytest.raises(OutOfOrderSequenceError, match="sent sequence 0 where 6 comes next"):
        produce(broker, sent[0])
    assert produce(broker, sent[1]).duplicate
    assert broker.log("t", 0).next_offset == BATCHES_KEPT + 1


def test_a_gap_is_refused_and_nothing_is_stored(broker: Broker) -> None:
    produce(broker, idempotent(2, seq=0))
    for seq in (3, 1, 100):
        with pytest.raises(OutOfOrderSequenceError):
            produce(broker, idempotent(seq=seq))
    assert broker.log("t", 0).next_offset == 2
    assert produce(broker, idempotent(seq=2)).base_offset == 2


def test_a_batch_that_overlaps_a_stored_one_is_not_a_duplicate(broker: Broker) -> None:
    produce(broker, idempotent(3, seq=0))
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(2, seq=0))  # same first sequence, another last one
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(1, seq=1))


def test_an_unknown_producer_may_start_at_any_sequence(broker: Broker) -> None:
    assert produce(broker, idempotent(2, seq=42, pid=9)).base_offset == 0
    with pytest.raises(OutOfOrderSequenceError, match="where 44 comes next"):
        produce(broker, idempotent(seq=42 + 3, pid=9))
    assert produce(broker, idempotent(seq=44, pid=9)).base_offset == 2
    assert produce(broker, idempotent(seq=5, pid=10)).base_offset == 3  # another producer


def test_sequences_wrap_around_like_kafkas(broker: Broker) -> None:
    wrapping = idempotent(3, seq=MAX_SEQUENCE - 1)  # sequences MAX-1, MAX, 0
    produce(broker, wrapping)
    assert produce(broker, wrapping).duplicate
    with pytest.raises(OutOfOrderSequenceError, match="where 1 comes next"):
        produce(broker, idempotent(seq=0))
    assert not produce(broker, idempotent(seq=1)).duplicate
    produce(broker, idempotent(2, seq=2, pid=8))
    produce(broker, idempotent(seq=MAX_SEQUENCE, pid=11))
    assert produce(broker, idempotent(seq=0, pid=11)).base_offset == 7  # MAX is followed by 0


def test_an_older_epoch_is_fenced(broker: Broker) -> None:
    old = idempotent(seq=0, epoch=1)
    produce(broker, old)
    assert produce(broker, idempotent(seq=0, epoch=2)).base_offset == 1  # a new epoch starts at 0
    with pytest.raises(InvalidProducerEpochError, match="epoch 2 has fenced it"):
        produce(broker, idempotent(seq=1, epoch=1))  # in sequence for epoch 1, but fenced
    with pytest.raises(InvalidProducerEpochError):
        produce(broker, old)  # not a duplicate: its epoch is over
    assert broker.log("t", 0).next_offset == 2


def test_a_new_epoch_must_start_at_sequence_zero(broker: Broker) -> None:
    produce(broker, idempotent(3, seq=0, epoch=0))
    with pytest.raises(OutOfOrderSequenceError, match="a new epoch starts at sequence 0"):
        produce(broker, idempotent(seq=3, epoch=1))
    produce(broker, idempotent(2, seq=0, epoch=1))
    # The batches of the old epoch are forgotten: the same sequences are new in this epoch.
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(3, seq=0, epoch=1))
    assert produce(broker, idempotent(seq=2, epoch=1)).base_offset == 5


def test_plain_producers_are_not_checked(broker: Broker) -> None:
    data = batch(3)
    assert produce(broker, data).base_offset == 0
    assert produce(broker, data).base_offset == 3  # the same bytes again are stored again
    assert broker.producer_state("t", 0).producers == {}


def test_a_multi_batch_produce_is_checked_batch_after_batch(broker: Broker) -> None:
    first = idempotent(2, seq=0) + batch(1) + idempotent(3, seq=2) + idempotent(seq=0, pid=8)
    result = produce(broker, first)
    assert (result.base_offset, result.next_offset, result.duplicate) == (0, 7, False)
    retry = produce(broker, idempotent(2, seq=0) + idempotent(3, seq=2))
    assert (retry.base_offset, retry.next_offset, retry.duplicate) == (0, 6, True)
    assert produce(broker, idempotent(seq=0, pid=8)).duplicate

    with pytest.raises(InvalidRecordError, match="send retried batches in a produce of their own"):
        produce(broker, idempotent(3, seq=2) + idempotent(seq=5))
    with pytest.raises(InvalidRecordError):
        produce(broker, batch(1) + idempotent(3, seq=2))
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=5) + idempotent(seq=7))  # a gap inside the produce
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=5) + idempotent(seq=5))  # the same batch twice
    assert broker.log("t", 0).next_offset == 7  # nothing of the refused produces was stored
    assert produce(broker, idempotent(seq=5) + idempotent(seq=6)).base_offset == 7


def test_the_state_changes_only_after_a_successful_append() -> None:
    fs = FaultFileSystem()
    broker = open_fault_broker(fs)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(seq=0))
    fs.fail("write", error=errno.ENOSPC)
    with pytest.raises(StorageError):
        produce(broker, idempotent(seq=1))
    result = produce(broker, idempotent(seq=1))  # the retry is new, not a duplicate
    assert (result.base_offset, result.duplicate) == (1, False)
    assert produce(broker, idempotent(seq=1)).duplicate
    broker.close()


def test_a_duplicate_waits_for_the_original_to_be_durable() -> None:
    fs = FaultFileSystem()
    broker = open_fault_broker(fs)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(2, seq=0))
    retry = produce(broker, idempotent(2, seq=0))
    assert retry.duplicate
    assert broker.flushed_offset("t", 0) < retry.durable.next_offset  # the server's ack waits for this
    flush(broker)
    assert broker.flushed_offset("t", 0) >= retry.durable.next_offset
    broker.close()


# -- producer ids --------------------------------------------------------------------------------


def test_a_memory_broker_counts_producer_ids() -> None:
    broker = Broker.in_memory(now_ms=NOW)
    assert [broker.allocate_producer_id() for _ in range(3)] == [0, 1, 2]


def test_producer_ids_are_reserved_in_blocks_and_never_repeat_across_restarts(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    broker = Broker.open(data, now_ms=NOW)
    assert not os.path.exists(os.path.join(data, "producer-ids.json"))  # written on first use
    first = [broker.allocate_producer_id() for _ in range(3)]
    assert first == [0, 1, 2]
    assert json.loads((tmp_path / "data" / "producer-ids.json").read_text())["next"] == PRODUCER_ID_BLOCK
    broker.close()
    broker = Broker.open(data, now_ms=NOW)
    second = [broker.allocate_producer_id() for _ in range(PRODUCER_ID_BLOCK + 1)]
    assert second[0] == PRODUCER_ID_BLOCK  # the rest of the first block is never used
    assert len(set(second)) == len(second)
    assert json.loads((tmp_path / "data" / "producer-ids.json").read_text())["next"] == 3 * PRODUCER_ID_BLOCK
    broker.close()


@pytest.mark.parametrize("tear", [False, True], ids=["clean-loss", "torn-loss"])
def test_producer_ids_never_repeat_after_a_crash_at_any_step_of_a_reservation(tear: bool) -> None:
    # A dry run counts the file operations of reserving the second block.
    fs = FaultFileSystem()
    broker = open_fault_broker(fs)
    for _ in range(PRODUCER_ID_BLOCK):
        broker.allocate_producer_id()
    before = sum(fs.counts[op] for op in MUTATING_OPS)
    broker.allocate_producer_id()
    steps = sum(fs.counts[op] for op in MUTATING_OPS) - before
    assert steps >= 4  # temp file, write, fsync, rename, directory fsync

    for k in range(steps + 1):
        fs = FaultFileSystem(seed=k)
        broker = open_fault_broker(fs)
        handed = [broker.allocate_producer_id() for _ in range(PRODUCER_ID_BLOCK)]
        fs.crash_after(k)
        try:
            handed.append(broker.allocate_producer_id())
        except SimulatedCrash:
            pass
        fs.power_loss(tear=tear)
        broker = open_fault_broker(fs)
        after = [broker.allocate_producer_id() for _ in range(3)]
        assert min(after) > max(handed), f"crash at step {k}: ids repeat"
        broker.close()


def test_a_failed_reservation_hands_out_no_id_and_is_retried() -> None:
    fs = FaultFileSystem()
    broker = open_fault_broker(fs)
    fs.fail("fsync", error=errno.EIO)
    with pytest.raises(StorageError, match="cannot reserve producer ids"):
        broker.allocate_producer_id()
    assert broker.allocate_producer_id() == 0
    fs.power_loss()
    assert open_fault_broker(fs).allocate_producer_id() == PRODUCER_ID_BLOCK


def test_an_unreadable_producer_id_file_stops_allocation_not_the_broker(tmp_path: Path) -> None:
    (tmp_path / "producer-ids.json").write_text("{garbage")
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    with pytest.raises(StorageError, match="could repeat an id"):
        broker.allocate_producer_id()
    broker.close()


def test_a_leftover_producer_id_temp_file_is_removed(tmp_path: Path) -> None:
    (tmp_path / "producer-ids.json.tmp").write_text('{"version": 1, "next": 5000}')
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    assert not (tmp_path / "producer-ids.json.tmp").exists()
    assert broker.allocate_producer_id() == 0
    broker.close()


# -- restarts, crashes, power loss --------------------------------------------------------------


def test_the_state_survives_a_clean_restart_through_its_snapshot(tmp_path: Path) -> None:
    """Retention deleted every batch of producer 7: only the snapshot still knows it."""
    data = str(tmp_path / "data")
    broker = Broker.open(data, now_ms=NOW)
    broker.create_topic("t", config={"segment.bytes": "1024", "retention.bytes": "1024"}, now_ms=NOW)
    kept = [produce(broker, idempotent(2, seq=seq)) for seq in (0, 2, 4)]
    while broker.log("t", 0).size_bytes < 4096:
        produce(broker, batch(1))
    broker.apply_retention(NOW)
    assert broker.log("t", 0).log_start_offset > kept[-1].next_offset
    end = broker.log("t", 0).next_offset
    broker.close()
    snapshot = json.loads((tmp_path / "data" / "t-0" / PRODUCER_STATE_FILE).read_text())
    assert snapshot["offset"] == end

    broker = Broker.open(data, now_ms=NOW)
    report = next(r for r in broker.recovery if r.directory.endswith("t-0"))
    assert report.clean_shutdown
    assert not any("producer state" in n for n in report.notes)  # nothing to replay
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=7))  # an unknown producer would be accepted
    retry = produce(broker, idempotent(2, seq=4))
    assert retry.duplicate
    assert (retry.base_offset, retry.next_offset) == (kept[-1].base_offset, kept[-1].next_offset)
    assert produce(broker, idempotent(seq=6)).base_offset == end
    broker.close()


def _crash_scenario(snapshot_after: int | None) -> tuple[FaultFileSystem, list[tuple[bytes, ProduceResult]]]:
    fs = FaultFileSystem()
    broker = open_fault_broker(fs)
    broker.create_topic("t", config={"segment.bytes": "1024"}, now_ms=NOW)
    sent = []
    seq = 0
    for i in range(40):
        pid = 7 + i % 3
        data = idempotent(2, seq=seq, pid=pid) if pid == 7 else idempotent(seq=i // 3, pid=pid)
        sent.append((data, produce(broker, data)))
        seq += 2 if pid == 7 else 0
        produce(broker, batch(1))
        if snapshot_after == i:
            assert broker.snapshot_producer_state(NOW) >= 1
    assert len(broker.log("t", 0).segments) > 3  # the walk crosses segments
    fs.kill()  # the process dies here: no close, no flush (the page cache survives)
    return fs, sent


@pytest.mark.parametrize("snapshot_after", [None, 10], ids=["no-snapshot", "stale-snapshot"])
def test_the_state_survives_a_crash_by_walking_the_batch_headers(snapshot_after: int | None) -> None:
    fs, sent = _crash_scenario(snapshot_after)
    broker = open_fault_broker(fs)
    report = next(r for r in broker.recovery if r.directory.endswith("t-0"))
    assert not report.clean_shutdown
    origin = "the log start" if snapshot_after is None else "the snapshot at offset"
    assert any("replayed" in n and origin in n for n in report.notes), report.notes
    end = broker.log("t", 0).next_offset
    for data, original in sent[-3 * BATCHES_KEPT :]:
        retry = produce(broker, data)
        assert retry.duplicate
        assert (retry.base_offset, retry.next_offset) == (original.base_offset, original.next_offset)
    assert broker.log("t", 0).next_offset == end
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, sent[0][0])
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=1000))
    broker.close()


def test_a_snapshot_is_not_needed_for_a_partition_without_batches(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    assert broker.snapshot_producer_state(NOW) == 0
    broker.close()
    assert PRODUCER_STATE_FILE not in os.listdir(tmp_path / "t-0")


def test_snapshots_are_written_only_when_the_log_or_the_state_changed(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(seq=0))
    assert broker.snapshot_producer_state(NOW) == 1
    assert broker.snapshot_producer_state(NOW) == 0
    produce(broker, idempotent(seq=0))  # a duplicate changes nothing
    assert broker.snapshot_producer_state(NOW) == 0
    produce(broker, batch(1))  # a plain batch moves the log end the walk would start from
    assert broker.snapshot_producer_state(NOW) == 1
    assert json.loads((tmp_path / "t-0" / PRODUCER_STATE_FILE).read_text())["offset"] == 2
    broker.close()
    assert Broker.in_memory(now_ms=NOW).snapshot_producer_state(NOW) == 0


def test_power_loss_keeps_the_state_in_step_with_the_log() -> None:
    """A snapshot covering batches that were not fsynced is beyond the log after a power loss:
    it is removed, so it can never be taken for the state of other batches at the same offsets."""
    fs = FaultFileSystem(seed=3)
    broker = open_fault_broker(fs)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(seq=0, tag="a"))
    flush(broker)
    produce(broker, idempotent(seq=1, tag="lost"))
    assert broker.snapshot_producer_state(NOW) == 1  # covers the unflushed batch
    fs.power_loss(tear=True)

    broker = open_fault_broker(fs)
    report = next(r for r in broker.recovery if r.directory.endswith("t-0"))
    assert any("ignored and removed" in n and "past the log end 1" in n for n in report.notes), report.notes
    assert not fs.exists(f"{DATA}/t-0/{PRODUCER_STATE_FILE}")
    assert broker.log("t", 0).next_offset == 1
    # The lost batch is new again: appended, not answered with offsets that no longer hold it.
    other = idempotent(2, seq=1, tag="other")
    assert produce(broker, other) == ProduceResult("t", 0, 1, 3, 0)
    flush(broker)

    fs.kill()  # a kill -9 with no snapshot since
    broker = open_fault_broker(fs)
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=1, tag="lost"))  # the removed snapshot would call it a duplicate
    assert produce(broker, other).duplicate
    assert values(broker) == [b"ap7e0s0+0", b"otherp7e0s1+0", b"otherp7e0s1+1"]
    broker.close()


def test_power_loss_under_fsync_always_loses_no_acked_state() -> None:
    fs = FaultFileSystem(seed=1)
    broker = open_fault_broker(fs, fsync=FsyncPolicy("always"))
    broker.create_topic("t", now_ms=NOW)
    acked = [produce(broker, idempotent(seq=seq)) for seq in range(3)]
    flush(broker)  # what the server waits for before it acks
    broker.snapshot_producer_state(NOW)
    acked += [produce(broker, idempotent(seq=3))]
    flush(broker)
    produce(broker, idempotent(seq=4))  # never acked
    fs.power_loss(tear=True)

    broker = open_fault_broker(fs, fsync=FsyncPolicy("always"))
    end = broker.log("t", 0).next_offset
    assert end in (4, 5)
    for seq, original in enumerate(acked):
        retry = produce(broker, idempotent(seq=seq))
        assert (retry.duplicate, retry.base_offset) == (True, original.base_offset)
    retry = produce(broker, idempotent(seq=4))
    assert retry.base_offset == 4
    assert retry.duplicate == (end == 5)
    broker.close()


def test_an_unreadable_snapshot_is_replaced_by_a_walk_of_the_log(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    broker = Broker.open(data, now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(3, seq=0))
    broker.close()
    for garbage in ('{"version": 1, "offset": "x"}', "[1, 2", '{"version": 2}', ""):
        (tmp_path / "data" / "t-0" / PRODUCER_STATE_FILE).write_text(garbage)
        broker = Broker.open(data, now_ms=NOW)
        report = next(r for r in broker.recovery if r.directory.endswith("t-0"))
        assert any("ignored and removed: unreadable" in n for n in report.notes), report.notes
        assert "producer state: 1 batch header(s) from the log start replayed" in report.notes
        assert produce(broker, idempotent(3, seq=0)) == ProduceResult("t", 0, 0, 3, 0, duplicate=True)
        broker.close()  # writes a good snapshot again
        assert json.loads((tmp_path / "data" / "t-0" / PRODUCER_STATE_FILE).read_text())["offset"] == 3


def test_the_snapshot_lists_what_kafka_keeps(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    for seq in range(0, 14, 2):
        produce(broker, idempotent(2, seq=seq, timestamp=NOW - 10 + seq))
    broker.close()
    snapshot = json.loads((tmp_path / "t-0" / PRODUCER_STATE_FILE).read_text())
    assert snapshot["version"] == 1
    assert snapshot["offset"] == 14
    [producer] = snapshot["producers"]
    assert (producer["id"], producer["epoch"], producer["last_append_ms"]) == (7, 0, NOW)
    assert producer["batches"] == [[seq, seq + 1, seq, seq + 1, NOW - 10 + seq] for seq in range(4, 14, 2)]


def test_idle_producers_expire_when_the_state_is_snapshotted(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(seq=0, pid=7))
    broker.produce("t", 0, idempotent(seq=0, pid=8), now_ms=NOW + 1000)
    broker.snapshot_producer_state(NOW + PRODUCER_ID_EXPIRATION_MS)
    assert set(broker.producer_state("t", 0).producers) == {7, 8}  # not older than 7 days yet
    broker.snapshot_producer_state(NOW + PRODUCER_ID_EXPIRATION_MS + 1)
    assert set(broker.producer_state("t", 0).producers) == {8}
    snapshot = json.loads((tmp_path / "t-0" / PRODUCER_STATE_FILE).read_text())
    assert [p["id"] for p in snapshot["producers"]] == [8]
    broker.close()
    broker = Broker.open(str(tmp_path), now_ms=NOW + PRODUCER_ID_EXPIRATION_MS + 1)
    assert produce(broker, idempotent(seq=9, pid=7)).base_offset == 2  # unknown again: accepted
    with pytest.raises(OutOfOrderSequenceError):
        produce(broker, idempotent(seq=9, pid=8))
    broker.close()


def test_deleting_a_topic_deletes_its_producer_state(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    produce(broker, idempotent(seq=0))
    broker.snapshot_producer_state(NOW)
    assert (tmp_path / "t-0" / PRODUCER_STATE_FILE).exists()
    broker.delete_topic("t")
    assert not (tmp_path / "t-0").exists()
    broker.create_topic("t", now_ms=NOW)
    assert not produce(broker, idempotent(seq=0)).duplicate
    assert produce(broker, idempotent(seq=5, pid=9)).base_offset == 1
    broker.close()


def test_partition_recovery_keeps_the_snapshot_and_removes_its_temp_file(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    log = PartitionLog.open(OsFileSystem(), str(directory), now_ms=NOW)
    log.append(idempotent(seq=0), NOW)
    log.close()
    (directory / PRODUCER_STATE_FILE).write_text('{"version": 1, "offset": 1, "producers": []}')
    (directory / (PRODUCER_STATE_FILE + ".tmp")).write_text("half")
    log = PartitionLog.open(OsFileSystem(), str(directory), now_ms=NOW)
    assert log.recovery is not None
    assert [os.path.basename(p) for p in log.recovery.removed_files] == [PRODUCER_STATE_FILE + ".tmp"]
    assert (directory / PRODUCER_STATE_FILE).exists()
    log.close()


def test_the_header_walk_sees_every_batch_once_from_any_offset(tmp_path: Path) -> None:
    log = PartitionLog.open(
        OsFileSystem(),
        str(tmp_path / "t-0"),
        LogConfig(segment_bytes=1024, index_interval_bytes=200),
        now_ms=0,
    )
    starts = []
    for i in range(60):
        starts.append(log.append(idempotent(1 + i % 4, seq=i, pid=i), 0))
    assert len(log.segments) > 3
    ends = [*starts[1:], log.next_offset]
    for offset in (0, 1, starts[17], starts[17] + 1, ends[17] - 1, starts[-1], log.next_offset):
        holding = next((i for i in range(len(starts)) if starts[i] <= offset < ends[i]), len(starts))
        assert [h.base_offset for h in log.batch_headers(offset)] == starts[holding:], offset
    assert [h.producer_id for h in log.batch_headers(0)] == list(range(60))
    log.close()


def test_the_table_refuses_snapshots_that_do_not_hold_together() -> None:
    good = {"id": 7, "epoch": 0, "last_append_ms": NOW, "batches": [[0, 1, 0, 1, NOW]]}
    ProducerStateTable.from_snapshot(
        "t", json.dumps({"version": 1, "offset": 2, "producers": [good]}).encode()
    )
    for bad in (
        {**good, "batches": [[0, 1, 0, 2, NOW]]},  # past the snapshot's offset
        {**good, "batches": [[0, 1, 1, 0, NOW]]},  # last offset before base offset
        {**good, "batches": []},
        {**good, "batches": [[0, 1, 0, 1, NOW]] * 6},
        {**good, "batches": [[-1, 1, 0, 1, NOW]]},
        {**good, "id": -1},
        {**good, "id": True},
        {**good, "epoch": 1 << 15},
    ):
        with pytest.raises(SnapshotError):
            ProducerStateTable.from_snapshot(
                "t", json.dumps({"version": 1, "offset": 2, "producers": [bad]}).encode()
            )
    with pytest.raises(SnapshotError, match="twice"):
        ProducerStateTable.from_snapshot(
            "t", json.dumps({"version": 1, "offset": 2, "producers": [good, good]}).encode()
        )

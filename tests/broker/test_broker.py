"""The broker core, without any server: topics, produce rules, fetch, offsets, persistence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from logbroker.broker.broker import Broker, BrokerOptions, FsyncPolicy
from logbroker.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logbroker.records import encode_batch
from logbroker.records.batch import ATTR_CONTROL, ATTR_LOG_APPEND_TIME
from logbroker.storage.fault_fs import FaultFileSystem
from tests.helpers import batch, offsets

NOW = 1_767_225_600_000


@pytest.fixture(params=["memory", "file"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    if request.param == "memory":
        return Broker.in_memory(now_ms=NOW)
    return Broker.open(str(tmp_path / "data"), now_ms=NOW)


@pytest.mark.parametrize(
    "name", ["", "a b", "a/b", "..", ".", "x" * 250, "naïve", "tab\t", "__offsets", "a\x00b"]
)
def test_bad_topic_names_are_refused_before_the_disk(tmp_path: Path, name: str) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InvalidTopicError):
        broker.create_topic(name, now_ms=NOW)
    assert sorted(os.listdir(tmp_path)) == before
    broker.close()


def test_good_names(broker: Broker) -> None:
    for name in ("a", "A-b_c.d", "x" * 249, "orders.v2"):
        broker.create_topic(name, now_ms=NOW)
    assert [t.name for t in broker.list_topics()] == sorted(["a", "A-b_c.d", "x" * 249, "orders.v2"])


def test_create_describe_delete(broker: Broker) -> None:
    info = broker.create_topic("orders", 3, {"retention.ms": "1000"}, now_ms=NOW)
    assert info.partitions == 3 and len(info.partition_info) == 3
    assert info.config["retention.ms"] == "1000"
    assert info.config["segment.bytes"] == str(1 << 30)
    with pytest.raises(TopicAlreadyExistsError):
        broker.create_topic("orders", now_ms=NOW)
    broker.delete_topic("orders")
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.describe_topic("orders")
    assert broker.list_topics() == []


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"retention.mss": "1"}, "unknown topic setting"),
        ({"retention.ms": "soon"}, "integer"),
        ({"segment.bytes": "10"}, "at least 1024"),
        ({"max.message.bytes": str(1 << 40)}, "at most"),
    ],
)
def test_bad_configs_are_refused(broker: Broker, config: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidConfigError, match=match):
        broker.create_topic("t", config=config, now_ms=NOW)
    assert broker.list_topics() == []


@pytest.mark.parametrize("count", [0, -1, 10_001])
def test_partition_counts(broker: Broker, count: int) -> None:
    with pytest.raises(InvalidPartitionsError):
        broker.create_topic("t", count, now_ms=NOW)


def test_topics_survive_a_restart_and_delete_removes_files(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    broker = Broker.open(data, now_ms=NOW)
    broker.create_topic("orders", 2, {"retention.bytes": "1000000"}, now_ms=NOW)
    broker.create_topic("gone", 1, now_ms=NOW)
    broker.produce("orders", 1, batch(3), now_ms=NOW)
    broker.delete_topic("gone")
    assert not os.path.exists(os.path.join(data, "gone-0"))
    broker.close()
    catalogue = json.loads((tmp_path / "data" / "topics.json").read_text())
    assert list(catalogue["topics"]) == ["orders"]
    broker = Broker.open(data, now_ms=NOW)
    info = broker.describe_topic("orders")
    assert info.config["retention.bytes"] == "1000000"
    assert [p.log_end_offset for p in info.partition_info] == [0, 3]
    assert all(r.clean_shutdown for r in broker.recovery)
    broker.close()


def test_leftovers_of_an_interrupted_delete_are_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = Broker.open(str(data), now_ms=NOW)
    broker.create_topic("keep", now_ms=NOW)
    broker.close()
    (data / "deleted-0").mkdir()
    (data / "deleted-0" / "00000000000000000000.log").write_bytes(b"")
    (data / "keep-7").mkdir()
    (data / "notes").mkdir()
    broker = Broker.open(str(data), now_ms=NOW)
    assert sorted(os.listdir(data)) == [".lock", "keep-0", "notes", "topics.json"]
    assert len(broker.notes) == 2
    broker.close()


def test_recreating_a_deleted_topic_starts_empty(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    broker.produce("t", 0, batch(5), now_ms=NOW)
    broker.delete_topic("t")
    broker.create_topic("t", now_ms=NOW)
    assert broker.describe_topic("t").partition_info[0].log_end_offset == 0
    broker.close()


def test_an_unreadable_catalogue_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "topics.json").write_text("{not json")
    with pytest.raises(StorageError, match="topic catalogue is unreadable"):
        Broker.open(str(tmp_path), now_ms=NOW)


def test_produce_rules(broker: Broker) -> None:
    broker.create_topic("t", config={"max.message.bytes": "200"}, now_ms=NOW)
    assert broker.produce("t", 0, batch(2), now_ms=NOW).base_offset == 0
    with pytest.raises(MessageTooLargeError, match=r"max\.message\.bytes"):
        broker.produce("t", 0, batch(10), now_ms=NOW)
    with pytest.raises(InvalidRecordError, match="control"):
        broker.produce("t", 0, encode_batch([b"x"], attributes=ATTR_CONTROL, timestamp=NOW), now_ms=NOW)
    with pytest.raises(InvalidRecordError, match="base offset"):
        broker.produce("t", 0, encode_batch([b"x"], base_offset=5, timestamp=NOW), now_ms=NOW)
    with pytest.raises(InvalidRecordError, match="sequence"):
        broker.produce("t", 0, encode_batch([b"x"], producer_id=7, timestamp=NOW), now_ms=NOW)
    with pytest.raises(InvalidTimestampError, match="LogAppendTime"):
        broker.produce(
            "t", 0, encode_batch([b"x"], attributes=ATTR_LOG_APPEND_TIME, timestamp=NOW), now_ms=NOW
        )
    with pytest.raises(InvalidTimestampError, match="ahead"):
        broker.produce("t", 0, encode_batch([b"x"], timestamp=NOW + 3_600_001), now_ms=NOW)
    with pytest.raises(CorruptRecordError):
        broker.produce("t", 0, b"garbage" * 20, now_ms=NOW)
    with pytest.raises(UnknownTopicOrPartitionError, match="partitions 0 to 0"):
        broker.produce("t", 1, batch(1), now_ms=NOW)
    with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic"):
        broker.produce("nope", 0, batch(1), now_ms=NOW)
    assert broker.describe_topic("t").partition_info[0].log_end_offset == 2


def test_timestamps_in_the_past_are_refused_only_when_configured(broker: Broker) -> None:
    broker.create_topic("old", now_ms=NOW)
    broker.produce("old", 0, encode_batch([b"x"], timestamp=0), now_ms=NOW)
    broker.create_topic("recent", config={"message.timestamp.before.max.ms": "1000"}, now_ms=NOW)
    with pytest.raises(InvalidTimestampError, match="behind"):
        broker.produce("recent", 0, encode_batch([b"x"], timestamp=NOW - 1001), now_ms=NOW)


def test_auto_create_topic_creates_a_missing_topic_with_the_defaults_when_the_broker_allows_it() -> None:
    broker = Broker.in_memory(BrokerOptions(default_partitions=2), now_ms=NOW)  # on by default
    created = broker.auto_create_topic("fresh", now_ms=NOW)
    assert created is not None and (created.name, created.partitions) == ("fresh", 2)
    broker.produce("fresh", 1, batch(1), now_ms=NOW)
    assert broker.describe_topic("fresh").partitions == 2
    assert broker.auto_create_topic("fresh", now_ms=NOW) is None  # exists: nothing happens
    with pytest.raises(InvalidTopicError):
        broker.auto_create_topic("bad name", now_ms=NOW)
    assert broker.auto_create_topic("__internal", now_ms=NOW) is None
    assert not broker.has_topic("__internal")
    off = Broker.in_memory(BrokerOptions(auto_create_topics=False), now_ms=NOW)
    assert off.auto_create_topic("fresh", now_ms=NOW) is None
    assert not off.has_topic("fresh")


def test_no_operation_but_auto_create_topic_creates_a_topic_even_when_the_broker_allows_it() -> None:
    """Regression: giving `produce` the time (`now_ms`) once switched auto-creation on."""
    broker = Broker.in_memory(BrokerOptions(auto_create_topics=True), now_ms=NOW)
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.produce("fresh", 0, batch(1), now_ms=NOW)
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.fetch("fresh", 0, 0, 1 << 20)
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.list_offset("fresh", 0, "latest")
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.partition_count("fresh")
    assert not broker.has_topic("fresh")


def test_fetch_and_out_of_range(broker: Broker) -> None:
    broker.create_topic("t", now_ms=NOW)
    broker.produce("t", 0, batch(3), now_ms=NOW)
    if broker.durable:
        broker.log("t", 0).flush()
    result = broker.fetch("t", 0, 1, 1 << 20)
    assert offsets(result.data) == [0, 1, 2]
    assert (result.high_watermark, result.log_start_offset, result.log_end_offset) == (3, 0, 3)
    assert broker.fetch("t", 0, 3, 1 << 20).data == b""
    assert broker.fetch("t", 0, 0, 0).data == b""
    with pytest.raises(OffsetOutOfRangeError) as info:
        broker.fetch("t", 0, 4, 100)
    assert (info.value.log_start_offset, info.value.log_end_offset) == (0, 3)


def test_consumers_see_only_fsynced_records_under_fsync_always(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), BrokerOptions(fsync=FsyncPolicy.parse("always")), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    result = broker.produce("t", 0, batch(3), now_ms=NOW)
    assert broker.fetch("t", 0, 0, 1 << 20).data == b""  # not yet durable
    assert broker.list_offset("t", 0, "latest") == 0
    log = broker.log("t", 0)
    assert broker.take_dirty() == [(("t", 0), log)]
    assert broker.flushed_offset("t", 0) < result.durable.next_offset
    log.flush()
    assert broker.flushed_offset("t", 0) >= result.durable.next_offset
    assert offsets(broker.fetch("t", 0, 0, 1 << 20).data) == [0, 1, 2]
    broker.close()


def test_consumers_see_everything_under_weaker_policies(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), BrokerOptions(fsync=FsyncPolicy.parse("never")), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    broker.produce("t", 0, batch(3), now_ms=NOW)
    assert offsets(broker.fetch("t", 0, 0, 1 << 20).data) == [0, 1, 2]
    assert broker.take_dirty() == []  # nothing for a flusher to do
    broker.close()


def test_list_offsets(broker: Broker) -> None:
    broker.create_topic("t", now_ms=NOW)
    broker.produce("t", 0, encode_batch([b"a", b"b"], timestamps=[NOW - 100, NOW - 50]), now_ms=NOW)
    broker.produce("t", 0, encode_batch([b"c"], timestamp=NOW), now_ms=NOW)
    if broker.durable:
        broker.log("t", 0).flush()
    assert broker.list_offset("t", 0, "earliest") == 0
    assert broker.list_offset("t", 0, "latest") == 3
    assert broker.list_offset("t", 0, NOW - 60) == 1
    assert broker.list_offset("t", 0, NOW + 1) is None


@pytest.mark.parametrize(
    ("text", "policy"),
    [("always", "always"), ("never", "never"), ("interval:250", "interval:250"), (" always ", "always")],
)
def test_fsync_policies_parse(text: str, policy: str) -> None:
    assert str(FsyncPolicy.parse(text)) == policy


@pytest.mark.parametrize("text", ["sometimes", "interval:", "interval:0", "interval:-5", "interval:x"])
def test_bad_fsync_policies(text: str) -> None:
    with pytest.raises(InvalidConfigError):
        FsyncPolicy.parse(text)


def fill(broker: Broker, topic: str) -> int:
    """Produce to `topic` until not even a one-record batch fits; returns the batches stored."""
    n = 0
    for size in (50, 1):
        with pytest.raises(StorageError, match="no space"):
            while True:
                broker.produce(topic, 0, batch(size, start=n), now_ms=NOW)
                n += 1
    return n


def test_deleting_a_topic_frees_a_full_disk(tmp_path: Path) -> None:
    # Found by the disk-full campaign: the delete had to rewrite the catalogue first, which
    # needs space, so on a full disk a topic could not be deleted to free it.
    fs = FaultFileSystem(capacity=200_000)
    broker = Broker.open("/data", fs=fs, now_ms=0)
    broker.create_topic("big", now_ms=0)
    broker.create_topic("small", now_ms=0)
    assert fill(broker, "big") > 0
    used = fs.used_bytes()
    broker.delete_topic("big")
    assert fs.used_bytes() < used // 4
    assert not fs.exists("/data/big-0") and not fs.exists("/data/big-0.deleted")
    broker.produce("small", 0, batch(1), now_ms=NOW)
    broker.close()
    reopened = Broker.open("/data", fs=fs, now_ms=0)
    assert [t.name for t in reopened.list_topics()] == ["small"]
    reopened.close()


def test_a_delete_a_full_disk_interrupted_is_finished_at_the_next_start() -> None:
    fs = FaultFileSystem(capacity=200_000)
    broker = Broker.open("/data", fs=fs, now_ms=0)
    broker.create_topic("kept", config={"retention.ms": "3600000", "segment.bytes": "1048576"}, now_ms=0)
    broker.create_topic("big", now_ms=0)
    fill(broker, "big")
    fs.fail("rename", after=1)  # the directory is marked, then the catalogue cannot be saved
    with pytest.raises(StorageError, match="removed at the next start"):
        broker.delete_topic("big")
    assert not broker.has_topic("big")
    assert fs.exists("/data/big-0.deleted")
    fs.power_loss()
    reopened = Broker.open("/data", fs=fs, now_ms=0)
    assert [t.name for t in reopened.list_topics()] == ["kept"]
    assert not fs.exists("/data/big-0.deleted")
    assert "finished deleting topic 'big'" in reopened.notes
    reopened.close()


def test_a_disk_already_below_the_reserve_at_open_is_a_note_saying_what_is_free() -> None:
    fs = FaultFileSystem(capacity=3 << 20)
    roomy = Broker.open("/data", BrokerOptions(min_free_bytes=1 << 20), fs=fs, now_ms=NOW)
    assert roomy.notes == []
    roomy.close()
    tight = Broker.open("/data", BrokerOptions(min_free_bytes=8 << 20), fs=fs, now_ms=NOW)
    [note] = tight.notes
    assert note.startswith("only 3 MiB free on the disk of /data, less than the 8 MiB kept")
    assert "every produce is refused" in note
    tight.close()


def test_produces_stop_at_the_free_space_reserve_and_metadata_still_fits() -> None:
    fs = FaultFileSystem(capacity=300_000)
    broker = Broker.open("/data", BrokerOptions(min_free_bytes=100_000), fs=fs, now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    with pytest.raises(StorageError, match=r"no space left for records.*min_free_bytes"):
        for n in range(1000):
            broker.produce("t", 0, batch(20, start=n), now_ms=NOW)
    free = fs.free_bytes("/data")
    assert free is not None and free >= 100_000 - len(batch(20))
    broker.create_topic("u", now_ms=NOW)  # the reserve keeps room for what is not records
    broker.delete_topic("t")
    broker.produce("u", 0, batch(20), now_ms=NOW)
    broker.close()

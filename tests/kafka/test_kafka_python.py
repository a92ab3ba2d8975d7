"""kafka-python 3 (pure Python, idempotent by default) against the Kafka listener."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from logbroker.records.partitioner import partition_for_key
from logbroker.testing import RunningBroker

GROUP_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 100, "max_poll_interval_ms": 10000}
# kafka-python 3.0.12 can drop the result of a JoinGroup/SyncGroup that outlasts one poll() (the
# member then never heartbeats again and is expired): poll timeouts here outlast a rebalance.
POLL_MS = 1000


def admin(broker: RunningBroker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.kafka_address)


def create_topic(broker: RunningBroker, name: str, partitions: int) -> None:
    client = admin(broker)
    try:
        client.create_topics([NewTopic(name, partitions, 1)])
    finally:
        client.close()


def producer(broker: RunningBroker, **config: object) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=broker.kafka_address, linger_ms=5, **config)


def group_consumer(broker: RunningBroker, group: str, *topics: str, **config: object) -> KafkaConsumer:
    return KafkaConsumer(
        *topics,
        bootstrap_servers=broker.kafka_address,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **{**GROUP_SETTINGS, **config},
    )


def drain(
    consumer: KafkaConsumer, n: int, timeout: float = 20.0
) -> list[tuple[str, int, int, bytes | None, bytes]]:
    got: list[tuple[str, int, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=POLL_MS).values():
            got.extend((r.topic, r.partition, r.offset, r.key, r.value) for r in records)
    return got


def test_produce_with_keys_and_consume_everything(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "orders", 3)
    sender = producer(kafka_broker)  # idempotent, acks=all: InitProducerId, sequence numbers
    sent = [sender.send("orders", key=b"key-%d" % i, value=b"value-%d" % i) for i in range(200)]
    sender.flush()
    metadata = [future.get(timeout=10) for future in sent]
    for i, record in enumerate(metadata):
        # The partition kafka-python chose is the one Kafka's murmur2 and our partitioner give.
        assert record.partition == partition_for_key(b"key-%d" % i, 3)
    sender.close()

    reader = KafkaConsumer(bootstrap_servers=kafka_broker.kafka_address, auto_offset_reset="earliest")
    reader.assign([TopicPartition("orders", p) for p in range(3)])
    got = drain(reader, 200)
    reader.close()
    assert sorted((key, value) for _, _, _, key, value in got) == sorted(
        (b"key-%d" % i, b"value-%d" % i) for i in range(200)
    )
    by_partition: dict[int, list[int]] = {}
    for _, partition, offset, _, _ in got:
        by_partition.setdefault(partition, []).append(offset)
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())


def _in_thread(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_group_members_split_rebalance_commit_resume_and_fan_out(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "jobs", 4)
    sender = producer(kafka_broker)
    for i in range(40):
        sender.send("jobs", key=b"%d" % i, value=b"job-%d" % i)
    sender.flush()

    first = group_consumer(kafka_broker, "workers", "jobs")
    second = group_consumer(kafka_broker, "workers", "jobs")
    seen: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}
    stop = threading.Event()

    def work(name: str, consumer: KafkaConsumer) -> Callable[[], None]:
        def loop() -> None:
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    seen[name].extend((r.partition, r.offset) for r in records)
                if len(seen["first"]) + len(seen["second"]) >= 40 and consumer.assignment():
                    consumer.commit()

        return loop

    threads = [_in_thread(work("first", first)), _in_thread(work("second", second))]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(seen["first"]) + len(seen["second"]) >= 40 and len(first.assignment()) == 2 == len(
            second.assignment()
        ):
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    records = seen["first"] + seen["second"]
    assert sorted(set(records)) == sorted(records)  # no record delivered twice without a rebalance
    assert len(set(records)) == 40
    assert first.assignment().isdisjoint(second.assignment())
    assert len(first.assignment() | second.assignment()) == 4

    second.close()  # leaves: its partitions move to the first member
    deadline = time.monotonic() + 20
    while len(first.assignment()) < 4 and time.monotonic() < deadline:
        first.poll(timeout_ms=POLL_MS)
    assert len(first.assignment()) == 4
    first.commit()
    first.close()

    for i in range(40, 45):
        sender.send("jobs", key=b"%d" % i, value=b"job-%d" % i)
    sender.flush()
    resumed = group_consumer(kafka_broker, "workers", "jobs")
    again = drain(resumed, 5)
    resumed.close()
    assert sorted(value for *_, value in again) == sorted(b"job-%d" % i for i in range(40, 45))

    other = group_consumer(kafka_broker, "audit", "jobs")  # another group: everything again
    everything = drain(other, 45)
    other.close()
    assert len(everything) == 45
    sender.close()


def test_admin_create_describe_delete(kafka_broker: RunningBroker) -> None:
    client = admin(kafka_broker)
    client.create_topics([NewTopic("configured", 2, 1, topic_configs={"retention.ms": "60000"})])
    assert "configured" in client.list_topics()
    [described] = client.describe_topics(["configured"])
    assert [p["partition_index"] for p in described["partitions"]] == [0, 1]
    configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "configured")])
    setting = configs["topic"]["configured"]["retention.ms"]
    assert (setting["value"], setting["config_source"]) == ("60000", "DYNAMIC_TOPIC_CONFIG")
    with pytest.raises(TopicAlreadyExistsError):
        client.create_topics([NewTopic("configured", 1, 1)])
    with pytest.raises(InvalidReplicationFactorError):
        client.create_topics([NewTopic("replicated", 1, 3)])
    client.delete_topics(["configured"])
    assert "configured" not in client.list_topics()
    client.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(kafka_broker: RunningBroker, codec: str) -> None:
    create_topic(kafka_broker, codec, 1)
    sender = producer(kafka_broker, compression_type=codec)
    records = [(b"k%d" % i, b"compressible value %d " % i * 20) for i in range(300)]
    for key, value in records:
        sender.send(codec, value, key=key)
    sender.flush()
    sender.close()
    reader = KafkaConsumer(bootstrap_servers=kafka_broker.kafka_address, auto_offset_reset="earliest")
    reader.assign([TopicPartition(codec, 0)])
    got = drain(reader, 300)
    reader.close()
    assert [(key, value) for *_, key, value in got] == records

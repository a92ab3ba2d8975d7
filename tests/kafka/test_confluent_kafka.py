"""confluent-kafka (librdkafka 2.x) against the Kafka listener."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from logbroker.records.batch import parse_header
from logbroker.records.partitioner import partition_for_key
from logbroker.testing import RunningBroker

GROUP_SETTINGS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 100, "auto.offset.reset": "earliest"}


def create_topic(broker: RunningBroker, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.kafka_address})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(10)


def produce(
    broker: RunningBroker, topic: str, records: list[tuple[bytes | None, bytes]], **config: object
) -> None:
    producer = Producer({"bootstrap.servers": broker.kafka_address, "linger.ms": 5, **config})
    failures: list[KafkaError] = []
    for key, value in records:
        producer.produce(
            topic, value, key, on_delivery=lambda err, _msg: failures.append(err) if err else None
        )
    assert producer.flush(20) == 0
    assert failures == []


def consumer(broker: RunningBroker, group: str, *topics: str, **config: object) -> Consumer:
    c = Consumer({"bootstrap.servers": broker.kafka_address, "group.id": group, **GROUP_SETTINGS, **config})
    if topics:
        c.subscribe(list(topics))
    return c


def drain(c: Consumer, n: int, timeout: float = 20.0) -> list[tuple[int, int, bytes | None, bytes]]:
    got: list[tuple[int, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        message = c.poll(0.2)
        if message is None:
            continue
        if message.error():
            raise KafkaException(message.error())
        got.append((message.partition(), message.offset(), message.key(), message.value()))
    return got


def test_produce_with_keys_and_consume_everything(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "orders", 3)
    records = [(b"key-%d" % i, b"value-%d" % i) for i in range(300)]
    partitions: dict[bytes, int] = {}
    producer = Producer(
        {"bootstrap.servers": kafka_broker.kafka_address, "linger.ms": 5, "partitioner": "murmur2_random"}
    )
    for key, value in records:
        producer.produce(
            "orders",
            value,
            key,
            on_delivery=lambda err, msg: partitions.__setitem__(msg.key(), msg.partition()),
        )
    assert producer.flush(20) == 0
    assert all(partition == partition_for_key(key, 3) for key, partition in partitions.items())

    reader = consumer(kafka_broker, "readers", "orders")
    got = drain(reader, 300)
    reader.close()
    assert sorted((key, value) for _, _, key, value in got) == sorted(records)


def test_groups_split_rebalance_commit_resume_and_fan_out(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "jobs", 4)
    produce(kafka_broker, "jobs", [(b"%d" % i, b"job-%d" % i) for i in range(40)])
    first = consumer(kafka_broker, "workers", "jobs", **{"enable.auto.commit": False})
    second = consumer(kafka_broker, "workers", "jobs", **{"enable.auto.commit": False})
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for c in (first, second):
            message = c.poll(0.05)
            if message is not None and not message.error():
                seen.append((message.partition(), message.offset()))
        # Distinct records: one read before the rebalance moved its partition is read again.
        if len(set(seen)) >= 40 and len(first.assignment()) == 2 == len(second.assignment()):
            break
    assert len(set(seen)) == 40
    mine = {tp.partition for tp in first.assignment()}
    theirs = {tp.partition for tp in second.assignment()}
    assert mine.isdisjoint(theirs) and mine | theirs == {0, 1, 2, 3}

    second.close()  # leaves: the first member takes every partition
    deadline = time.monotonic() + 20
    while len(first.assignment()) < 4 and time.monotonic() < deadline:
        first.poll(0.1)
    assert len(first.assignment()) == 4
    ends = [first.get_watermark_offsets(TopicPartition("jobs", p), timeout=10)[1] for p in range(4)]
    first.commit(offsets=[TopicPartition("jobs", p, end) for p, end in enumerate(ends)], asynchronous=False)
    first.close()

    produce(kafka_broker, "jobs", [(b"%d" % i, b"job-%d" % i) for i in range(40, 48)])
    resumed = consumer(kafka_broker, "workers", "jobs")
    again = drain(resumed, 8)
    committed = resumed.committed([TopicPartition("jobs", p) for p in range(4)], timeout=10)
    resumed.close()
    assert sorted(value for *_, value in again) == sorted(b"job-%d" % i for i in range(40, 48))
    assert sum(ends) == 40
    assert all(tp.offset >= end for tp, end in zip(committed, ends, strict=True))

    audit = consumer(kafka_broker, "audit", "jobs")  # another group gets everything
    assert len(drain(audit, 48)) == 48
    audit.close()


def test_a_producer_flush_succeeds_on_a_missing_topic_which_it_creates(kafka_broker: RunningBroker) -> None:
    produce(kafka_broker, "fresh", [(b"k1", b"hello")])
    assert kafka_broker.broker.describe_topic("fresh").partitions == 1
    reader = consumer(kafka_broker, "readers", "fresh")
    got = drain(reader, 1)
    reader.close()
    assert got == [(0, 0, b"k1", b"hello")]


def test_a_consumer_of_a_missing_topic_creates_nothing(kafka_broker: RunningBroker) -> None:
    reader = consumer(kafka_broker, "readers", "missing")
    try:
        with pytest.raises(KafkaException, match="UNKNOWN_TOPIC_OR_PART"):  # what Kafka answers
            drain(reader, 1)
    finally:
        reader.close()
    assert not kafka_broker.broker.has_topic("missing")


def test_admin_create_describe_delete(kafka_broker: RunningBroker) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.kafka_address})
    admin.create_topics([NewTopic("configured", 2, 1, config={"retention.ms": "60000"})])[
        "configured"
    ].result(10)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics["configured"].partitions) == 2
    [described] = admin.describe_configs([ConfigResource("topic", "configured")]).values()
    assert described.result(10)["retention.ms"].value == "60000"
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        admin.create_topics([NewTopic("configured", 1, 1)])["configured"].result(10)
    admin.delete_topics(["configured"])["configured"].result(10)
    assert "configured" not in admin.list_topics(timeout=10).topics


def test_admin_describes_the_broker_with_kafka_names(kafka_broker: RunningBroker) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_broker.kafka_address})
    [described] = admin.describe_configs([ConfigResource("broker", "0")]).values()
    configs = {name: entry.value for name, entry in described.result(10).items()}
    assert configs["log.retention.ms"] == "604800000"  # Kafka's broker names of the topic defaults
    assert configs["log.roll.ms"] == "604800000"
    assert configs["message.max.bytes"] == "1048588"
    assert configs["default.replication.factor"] == "1"
    assert configs["auto.create.topics.enable"] == "true"  # Kafka's default, and serve's
    assert not any(name.startswith("log.log.") for name in configs)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(kafka_broker: RunningBroker, codec: str) -> None:
    create_topic(kafka_broker, codec, 1)
    records = [(b"k%d" % i, b"compressible value %d " % i * 20) for i in range(500)]
    produce(kafka_broker, codec, records, **{"compression.type": codec})
    stored = parse_header(kafka_broker.broker.log(codec, 0).read(0, 1 << 20), 0)
    assert stored.compression == {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]  # kept as produced
    reader = consumer(kafka_broker, f"read-{codec}", codec)
    got = drain(reader, 500)
    reader.close()
    assert [(key, value) for _, _, key, value in got] == records


def test_the_idempotent_producer(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "exactly", 2)
    produce(
        kafka_broker, "exactly", [(b"%d" % i, b"v%d" % i) for i in range(100)], **{"enable.idempotence": True}
    )
    reader = consumer(kafka_broker, "check", "exactly")
    got = drain(reader, 100)
    assert drain(reader, 1, timeout=1.0) == []  # nothing more: each record stored once
    reader.close()
    assert sorted(value for *_, value in got) == sorted(b"v%d" % i for i in range(100))

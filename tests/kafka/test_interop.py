"""Both protocols over one broker: records, keys, groups and offsets cross between them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import trio
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import logbroker
from logbroker.errors import InconsistentGroupProtocolError, InvalidTopicError
from logbroker.records.partitioner import partition_for_key
from logbroker.testing import RunningBroker


def cli(broker: RunningBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logbroker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOGBROKER_BOOTSTRAP": broker.address},
    )


def native(broker: RunningBroker, work):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with await logbroker.connect(broker.address) as client:
            return await work(client)

    return trio.run(main)


def test_kafka_produced_records_read_by_the_cli_and_the_native_client(kafka_broker: RunningBroker) -> None:
    native(kafka_broker, lambda client: client.create_topic("mixed", partitions=3))
    producer = Producer({"bootstrap.servers": kafka_broker.kafka_address, "partitioner": "murmur2_random"})
    for i in range(30):
        producer.produce("mixed", b"value-%d" % i, b"key-%d" % i, headers=[("h", b"%d" % i)])
    assert producer.flush(20) == 0

    done = cli(kafka_broker, "consume", "mixed", "--format", "json", "--max-messages", "30")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["value"] for r in rows) == sorted(f"value-{i}" for i in range(30))
    for row in rows:
        assert row["partition"] == partition_for_key(row["key"].encode(), 3)  # Kafka's partitioner = ours
        assert row["headers"] == [["h", row["value"].split("-")[1]]]


def test_native_records_read_by_kafka_clients_with_the_same_partitions(kafka_broker: RunningBroker) -> None:
    async def produce(client: logbroker.Client) -> None:
        await client.create_topic("shared", partitions=4)
        async with client.producer() as producer:
            for i in range(40):
                await producer.send("shared", b"native-%d" % i, key=b"key-%d" % i)

    native(kafka_broker, produce)
    sender = KafkaProducer(bootstrap_servers=kafka_broker.kafka_address)
    placed = {
        i: sender.send("shared", b"kafka-%d" % i, key=b"key-%d" % i).get(10).partition for i in range(40)
    }
    sender.close()
    reader = KafkaConsumer(bootstrap_servers=kafka_broker.kafka_address, auto_offset_reset="earliest")
    reader.assign([TopicPartition("shared", p) for p in range(4)])
    got: dict[bytes, int] = {}
    deadline = time.monotonic() + 20
    while len(got) < 80 and time.monotonic() < deadline:
        for records in reader.poll(timeout_ms=500).values():
            got.update((r.value, r.partition) for r in records)
    reader.close()
    for i in range(40):
        # A key lands on one partition whichever client produced it.
        assert (
            got[b"native-%d" % i] == got[b"kafka-%d" % i] == placed[i] == partition_for_key(b"key-%d" % i, 4)
        )


def test_kafka_groups_in_the_offsets_inspector_and_groups_describe(kafka_broker: RunningBroker) -> None:
    native(kafka_broker, lambda client: client.create_topic("watched", partitions=2))
    native(kafka_broker, lambda client: client.produce("watched", [b"%d" % i for i in range(10)]))
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.kafka_address,
            "group.id": "kafka-readers",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["watched"])
    read = 0
    deadline = time.monotonic() + 20
    while read < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            read += 1
    consumer.commit(asynchronous=False)
    try:
        described = json.loads(cli(kafka_broker, "groups", "describe", "kafka-readers", "--json").stdout)
        assert (described["protocol"], described["state"]) == ("kafka", "Stable")
        [member] = described["members"]
        assert member["topics"] == ["watched"]
        assert sorted(a["partition"] for a in member["assignment"]) == [0, 1]
        offsets = json.loads(cli(kafka_broker, "offsets", "--group", "kafka-readers", "--json").stdout)
        assert sum(row["committed"] for row in offsets) == 10 and all(row["lag"] == 0 for row in offsets)
        listed = json.loads(cli(kafka_broker, "groups", "list", "--json").stdout)
        assert {"name": "kafka-readers", "members": 1, "protocol": "kafka"}.items() <= listed[0].items()
    finally:
        consumer.close()
    # With no members, the group's offsets can be reset from the CLI like a native group's.
    done = cli(
        kafka_broker, "groups", "reset-offsets", "kafka-readers", "--topic", "watched", "--to", "earliest"
    )
    assert done.returncode == 0, done.stderr
    rows = native(kafka_broker, lambda client: client.group_offsets("kafka-readers"))
    assert [r.committed for r in rows] == [0, 0]


def test_a_group_speaks_one_protocol_at_a_time(kafka_broker: RunningBroker) -> None:
    native(kafka_broker, lambda client: client.create_topic("t", partitions=1))

    async def hold_native_member(client: logbroker.Client) -> None:
        async with client.group_consumer("busy", "t") as member:
            await member.poll()
            kafka_member = Consumer(
                {
                    "bootstrap.servers": kafka_broker.kafka_address,
                    "group.id": "busy",
                    "session.timeout.ms": 6000,
                }
            )
            kafka_member.subscribe(["t"])
            error = None
            deadline = trio.current_time() + 10
            while error is None and trio.current_time() < deadline:
                message = await trio.to_thread.run_sync(kafka_member.poll, 0.2)
                if message is not None and message.error():
                    error = message.error()
            kafka_member.close()
            assert error is not None and error.code() == 23  # INCONSISTENT_GROUP_PROTOCOL

    native(kafka_broker, hold_native_member)

    kafka_member = KafkaConsumer("t", bootstrap_servers=kafka_broker.kafka_address, group_id="kafka-owned")
    deadline = time.monotonic() + 20
    while not kafka_member.assignment() and time.monotonic() < deadline:
        kafka_member.poll(timeout_ms=1000)

    async def try_native(client: logbroker.Client) -> None:
        with pytest.raises(InconsistentGroupProtocolError):
            async with client.group_consumer("kafka-owned", "t"):
                pass

    try:
        native(kafka_broker, try_native)
    finally:
        kafka_member.close()


def test_internal_topics_take_no_records(kafka_broker: RunningBroker) -> None:
    producer = Producer({"bootstrap.servers": kafka_broker.kafka_address, "message.timeout.ms": 2000})
    failures = []
    producer.produce("__offsets", b"x", on_delivery=lambda err, _msg: failures.append(err))
    producer.flush(10)
    assert [f.code() for f in failures] == [17]  # INVALID_TOPIC_EXCEPTION

    async def native_produce(client: logbroker.Client) -> None:
        with pytest.raises(InvalidTopicError):
            await client.produce("__offsets", [b"x"])

    native(kafka_broker, native_produce)
    assert kafka_broker.broker.log("__offsets", 0).next_offset == 0

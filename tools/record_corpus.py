"""Record the fuzzing seed corpus (`tests/fixtures/fuzz/`) from real clients.

    python tools/record_corpus.py

Runs a broker with both listeners in this process, records the bytes each connection sends (the
first 64 KiB of it), and drives real clients through it: confluent-kafka (produce with each
codec, a group consumer, admin), kafka-python (idempotent producer, consumer, admin), and the
native client (produce, consume, a group, admin). The record batches the broker stored are saved
as the `batches` seeds. Rewrites the corpus; run it when the protocols change.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.admin import NewTopic as KafkaPythonNewTopic

import logbroker
from logbroker.kafka.protocol import KafkaProtocol
from logbroker.protocol.connection import Connection
from logbroker.testing import BrokerThread

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fuzz"
LIMIT = 64 << 10
#: The topics the clients write, with their partition counts.
TOPICS: list[tuple[str, int]] = [("seeds", 2), ("seeds-kp", 1), ("seeds-native", 2)]

recorded: dict[str, dict[int, bytearray]] = {"native": {}, "kafka": {}}


def recording(cls: Any, target: str) -> None:
    original = cls.receive_data

    def receive_data(self: object, data: bytes) -> None:
        buffer = recorded[target].setdefault(id(self), bytearray())
        if len(buffer) < LIMIT:
            buffer += data[: LIMIT - len(buffer)]
        original(self, data)

    cls.receive_data = receive_data


def confluent(address: str) -> None:
    admin = AdminClient({"bootstrap.servers": address})
    for future in admin.create_topics([NewTopic("seeds", 2, 1)]).values():
        future.result(10)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        producer = Producer({"bootstrap.servers": address, "compression.type": codec, "linger.ms": 5})
        for i in range(50):
            producer.produce("seeds", b"value %d " % i * 4, b"key-%d" % i, headers={"h": b"v"})
        producer.flush(10)
    consumer = Consumer({"bootstrap.servers": address, "group.id": "seeds", "auto.offset.reset": "earliest"})
    consumer.subscribe(["seeds"])
    deadline = time.monotonic() + 10
    got = 0
    while got < 250 and time.monotonic() < deadline:
        got += len(consumer.consume(100, 0.5))
    consumer.commit()
    consumer.close()


def kafka_python(address: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=address)
    admin.create_topics([KafkaPythonNewTopic("seeds-kp", 1, 1)])
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "seeds-kp")])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=address, compression_type="gzip")
    for i in range(20):
        producer.send("seeds-kp", b"v%d" % i, key=b"k%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        "seeds-kp", bootstrap_servers=address, group_id="seeds-kp", auto_offset_reset="earliest"
    )
    consumer.poll(2000)
    consumer.commit()
    consumer.close()


async def native(address: str) -> None:
    async with await logbroker.connect(address) as client:
        await client.create_topic("seeds-native", partitions=2)
        async with client.producer() as producer:
            for i in range(50):
                await producer.send("seeds-native", b"v%d" % i, key=b"k%d" % i)
        consumer = client.consumer("seeds-native")
        for _ in range(10):
            await consumer.__anext__()
        async with client.group_consumer("seeds", "seeds-native", start="earliest") as group:
            for message in await group.poll():
                await message.ack()
        await client.list_topics()
        await client.describe_group("seeds")


def main() -> None:
    recording(KafkaProtocol, "kafka")
    recording(Connection, "native")
    with BrokerThread(kafka_port=0, kafka_group_initial_delay=0.0, auto_create_topics=True) as broker:
        confluent(broker.kafka_address)
        kafka_python(broker.kafka_address)
        trio.run(native, broker.address)
        stored = {
            f"{topic}-{p}": broker.broker.log(topic, p).read(0, 1 << 20)
            for topic, count in TOPICS
            for p in range(count)
        }
    shutil.rmtree(CORPUS, ignore_errors=True)
    seeds: dict[str, list[bytes]] = {
        "kafka": [bytes(d) for d in recorded["kafka"].values()],
        "native": [bytes(d) for d in recorded["native"].values()],
        "batches": list(stored.values()),
    }
    for target, inputs in seeds.items():
        folder = CORPUS / target
        folder.mkdir(parents=True)
        for data in inputs:
            if data:
                (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target}: {len(list(folder.iterdir()))} seeds, {sum(len(d) for d in inputs):,} bytes")


if __name__ == "__main__":
    main()

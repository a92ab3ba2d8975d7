"""aiokafka (asyncio) against the Kafka listener."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from logbroker.records.partitioner import partition_for_key
from logbroker.testing import RunningBroker

GROUP_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 100, "auto_offset_reset": "earliest"}


async def _create(address: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _drain(consumer: AIOKafkaConsumer, n: int) -> list[tuple[int, int, bytes, bytes]]:
    got: list[tuple[int, int, bytes, bytes]] = []
    async with asyncio.timeout(20):
        async for message in consumer:
            got.append((message.partition, message.offset, message.key, message.value))
            if len(got) >= n:
                break
    return got


def test_produce_with_keys_consume_in_groups_commit_and_resume(kafka_broker: RunningBroker) -> None:
    address = kafka_broker.kafka_address

    async def main() -> None:
        await _create(address, "events", 3)
        producer = AIOKafkaProducer(bootstrap_servers=address, enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            for i in range(60):
                sent = await producer.send_and_wait("events", b"value-%d" % i, key=b"key-%d" % i)
                assert sent.partition == partition_for_key(b"key-%d" % i, 3)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            "events", bootstrap_servers=address, group_id="g", enable_auto_commit=False, **GROUP_SETTINGS
        )
        await consumer.start()
        try:
            got = await _drain(consumer, 60)
            await consumer.commit()
        finally:
            await consumer.stop()
        assert sorted(value for *_, value in got) == sorted(b"value-%d" % i for i in range(60))

        producer = AIOKafkaProducer(bootstrap_servers=address, compression_type="lz4")
        await producer.start()
        try:
            for i in range(60, 65):
                await producer.send_and_wait("events", b"value-%d" % i, key=b"key-%d" % i)
        finally:
            await producer.stop()
        resumed = AIOKafkaConsumer("events", bootstrap_servers=address, group_id="g", **GROUP_SETTINGS)
        await resumed.start()
        try:
            again = await _drain(resumed, 5)
        finally:
            await resumed.stop()
        assert sorted(value for *_, value in again) == sorted(b"value-%d" % i for i in range(60, 65))

    asyncio.run(main())


def test_two_members_split_the_partitions(kafka_broker: RunningBroker) -> None:
    address = kafka_broker.kafka_address

    async def main() -> None:
        await _create(address, "work", 4)
        producer = AIOKafkaProducer(bootstrap_servers=address)
        await producer.start()
        try:
            for i in range(40):
                await producer.send("work", b"%d" % i, key=b"%d" % i)
            await producer.flush()
        finally:
            await producer.stop()
        members = [
            AIOKafkaConsumer("work", bootstrap_servers=address, group_id="split", **GROUP_SETTINGS)
            for _ in range(2)
        ]
        for member in members:
            await member.start()
        try:
            seen: list[tuple[int, int]] = []

            async def read(member: AIOKafkaConsumer) -> None:
                while True:
                    batches = await member.getmany(timeout_ms=200)
                    for records in batches.values():
                        seen.extend((r.partition, r.offset) for r in records)

            tasks = [asyncio.create_task(read(m)) for m in members]
            for _ in range(200):
                await asyncio.sleep(0.05)
                # Distinct records: one read before the rebalance moved its partition is read again.
                if len(set(seen)) >= 40 and all(len(m.assignment()) == 2 for m in members):
                    break
            for task in tasks:
                task.cancel()
            assert len(set(seen)) == 40
            first, second = (m.assignment() for m in members)
            assert first.isdisjoint(second) and len(first | second) == 4
        finally:
            for member in members:
                await member.stop()

    asyncio.run(main())


def test_rebalance_on_leave_fan_out_admin_and_codecs(kafka_broker: RunningBroker) -> None:
    address = kafka_broker.kafka_address

    async def main() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("codecs", 2, 1, topic_configs={"retention.ms": "60000"})])
            assert "codecs" in await admin.list_topics()
            [described] = await admin.describe_topics(["codecs"])
            assert len(described["partitions"]) == 2
        finally:
            await admin.close()

        sent = []
        for codec in (None, "gzip", "snappy", "lz4", "zstd"):
            producer = AIOKafkaProducer(bootstrap_servers=address, compression_type=codec)
            await producer.start()
            try:
                for i in range(10):
                    value = b"%s-%d " % (str(codec).encode(), i) * 10
                    await producer.send_and_wait("codecs", value, key=b"%d" % i)
                    sent.append(value)
            finally:
                await producer.stop()

        members = [
            AIOKafkaConsumer("codecs", bootstrap_servers=address, group_id="leave", **GROUP_SETTINGS)
            for _ in range(2)
        ]
        for member in members:
            await member.start()
        try:
            for _ in range(100):
                await asyncio.gather(*(m.getmany(timeout_ms=100) for m in members))
                if all(len(m.assignment()) == 1 for m in members):
                    break
            assert all(len(m.assignment()) == 1 for m in members)
            await members[1].stop()  # leaves: the other member takes both partitions
            for _ in range(100):
                await members[0].getmany(timeout_ms=100)
                if len(members[0].assignment()) == 2:
                    break
            assert len(members[0].assignment()) == 2
        finally:
            await members[0].stop()

        audit = AIOKafkaConsumer("codecs", bootstrap_servers=address, group_id="audit", **GROUP_SETTINGS)
        await audit.start()
        try:
            got = await _drain(audit, len(sent))  # another group: every record, decompressed
        finally:
            await audit.stop()
        assert sorted(value for *_, value in got) == sorted(sent)

        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        await admin.start()
        try:
            await admin.delete_topics(["codecs"])
            assert "codecs" not in await admin.list_topics()
        finally:
            await admin.close()

    asyncio.run(main())

"""Compressed batches through a real broker: the native producer writes them, the consumer and
the broker's dead-letter copy read their records."""

from __future__ import annotations

import pytest
import trio

import logbroker
from logbroker.protocol.messages import FetchPartition
from logbroker.records import Compression, iter_batches
from logbroker.testing import run_broker

Clock = trio.abc.Clock
CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]


async def stored_codecs(client: logbroker.Client, topic: str) -> set[int]:
    _, payload = await client.fetch([FetchPartition(topic, 0, 0, 16 << 20)], max_wait_ms=0)
    return {header.compression for header in iter_batches(payload)}


async def read(client: logbroker.Client, topic: str, n: int) -> list[logbroker.Message]:
    got: list[logbroker.Message] = []
    with trio.fail_after(30):
        async for message in client.consumer(topic):
            got.append(message)
            if len(got) == n:
                break
    return got


@pytest.mark.parametrize("codec", CODECS)
async def test_the_producer_compresses_and_the_consumer_decodes(codec: Compression) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("orders")
        sent = [
            (b"order-%d" % (i % 9), b"order %d created; " % i * 10, [("n", b"%d" % i)]) for i in range(400)
        ]
        async with client.producer(compression=codec, linger_ms=50) as producer:
            for key, value, headers in sent:
                await producer.send("orders", value, key=key, headers=headers, partition=0)
        assert await stored_codecs(client, "orders") == {codec}
        got = await read(client, "orders", len(sent))
        assert [(m.key, m.value, list(m.headers)) for m in got] == sent
        assert [m.offset for m in got] == list(range(len(sent)))


@pytest.mark.parametrize("codec", CODECS)
async def test_client_produce_takes_every_codec(codec: Compression) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        values = [b"value %d " % i * 20 for i in range(50)]
        assert await client.produce("t", values, compression=codec) == 0
        assert await stored_codecs(client, "t") == {codec}
        assert [m.value for m in await read(client, "t", 50)] == values


@pytest.mark.parametrize("codec", [Compression.SNAPPY, Compression.LZ4, Compression.ZSTD])
async def test_a_dead_letter_copy_keeps_a_compressed_record(
    autojump_clock: Clock, codec: Compression
) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("orders")
        await client.produce(
            "orders",
            [b"fine-0", b"poison " * 20, b"fine-2"],
            keys=[None, b"k", None],
            headers=[[], [("trace", b"abc")], []],
            compression=codec,
        )
        assert await stored_codecs(client, "orders") == {codec}
        handled: list[bytes] = []
        async with client.group_consumer("billing", "orders", max_deliveries=2, ack_timeout=60) as consumer:
            while len(handled) < 2:
                for message in await consumer.poll():
                    if message.key == b"k":
                        await message.nack()
                        break
                    handled.append(message.value or b"")
                    await message.ack()
        [letter] = await read(client, "dlq.billing.orders", 1)
        assert (letter.key, letter.value) == (b"k", b"poison " * 20)
        headers = dict(letter.headers)
        assert headers["trace"] == b"abc"
        assert b"could not be decoded" not in (headers["dlq.reason"] or b"")

"""Where a `Consumer` starts: N records before the end, and where an out-of-range position moves
(`on_out_of_range="nearest"`: before the log start to the start, past the end to the end)."""

from __future__ import annotations

import time

import pytest
import trio

import logbroker
from logbroker.errors import OffsetOutOfRangeError
from logbroker.testing import RunningBroker, run_broker


async def first_values(consumer: logbroker.Consumer, n: int) -> list[bytes | None]:
    got: list[bytes | None] = []
    with trio.fail_after(10):
        while len(got) < n:
            got += [m.value for m in await consumer.poll()]
    return got


async def trimmed_topic(broker: RunningBroker, client: logbroker.Client) -> int:
    """A topic `t` of 60 records whose oldest segments retention deleted; returns its log start."""
    await client.create_topic("t", config={"segment.bytes": 1024, "retention.bytes": 2048})
    for i in range(6):
        await client.produce("t", [b"%03d" % (10 * i + j) + b"." * 80 for j in range(10)])
    broker.broker.apply_retention(int(time.time() * 1000))
    description = await client.describe_topic("t")
    log_start = description.partitions[0].log_start_offset
    assert 0 < log_start < 60
    return log_start


async def test_start_from_end_starts_that_many_records_before_the_end_of_each_partition() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t", partitions=2)
        await client.produce("t", [b"a%d" % i for i in range(5)], partition=0)
        await client.produce("t", [b"b%d" % i for i in range(2)], partition=1)
        consumer = client.consumer("t", start_from_end=3)
        assert sorted(await first_values(consumer, 5)) == [b"a2", b"a3", b"a4", b"b0", b"b1"]
        assert consumer.positions == {0: 5, 1: 2}


async def test_start_from_end_is_clamped_at_the_log_start() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        log_start = await trimmed_topic(broker, client)
        consumer = client.consumer("t", start_from_end=1000, on_out_of_range="error")
        [value] = (await first_values(consumer, 1))[:1]
        assert value is not None and value.startswith(b"%03d" % log_start)


async def test_nearest_moves_a_position_past_the_end_to_the_end() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"old"] * 3)
        consumer = client.consumer("t", start=999_999, on_out_of_range="nearest")
        assert await consumer.poll() == []  # the out-of-range answer moves it
        assert consumer.positions == {0: 3}
        await client.produce("t", [b"new"])
        assert await first_values(consumer, 1) == [b"new"]


async def test_nearest_moves_a_position_before_the_log_start_to_the_start() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        log_start = await trimmed_topic(broker, client)
        consumer = client.consumer("t", start=0, on_out_of_range="nearest")
        [value] = (await first_values(consumer, 1))[:1]
        assert value is not None and value.startswith(b"%03d" % log_start)


async def test_earliest_stays_the_default_and_error_raises() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"x", b"y"])
        assert await first_values(client.consumer("t", start=50), 2) == [b"x", b"y"]
        with pytest.raises(OffsetOutOfRangeError):
            await client.consumer("t", start=50, on_out_of_range="error").poll()

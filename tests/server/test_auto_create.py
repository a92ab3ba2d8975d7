"""Topics created on first produce by the native protocol, as Kafka's auto.create.topics.enable
(on by default): a producer's requests create a missing topic with the default partition count,
logged once; a consumer's never create one; a request refused for another reason creates
nothing; and with auto-creation off a produce of a missing topic is refused naming it."""

from __future__ import annotations

import logging

import pytest
import trio
from trio.abc import Clock

import logbroker
from logbroker.errors import CorruptRecordError, InvalidRequestError, UnknownTopicOrPartitionError
from logbroker.protocol.messages import (
    DescribeTopic,
    Fetch,
    FetchPartition,
    JoinGroup,
    ListOffsets,
    Produce,
    ResetOffsets,
)
from logbroker.testing import run_broker
from tests.helpers import batch

UNKNOWN_TOPIC = 3


async def test_a_produce_creates_its_missing_topic_with_the_default_partition_count() -> None:
    async with (
        run_broker(default_partitions=3) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.produce("by-client", [b"x"])  # the producer looks its topic up first
        await client.request(Produce("by-request", 1), batch(1))  # a produce alone, no lookup
        assert {t.name: t.partitions for t in await client.list_topics()} == {"by-client": 3, "by-request": 3}
        _, payload = await client.fetch([FetchPartition("by-request", 1, 0)], max_wait_ms=0)
        assert payload  # the record went where it was sent


async def test_a_created_topic_is_logged_once_at_info_naming_the_producer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="logbroker.topics")
    async with run_broker() as broker:
        async with await logbroker.connect(broker.address, client_id="first") as first:
            await first.produce("logged", [b"1"])
        async with await logbroker.connect(broker.address, client_id="second") as second:
            await second.produce("logged", [b"2"])
    created = [r for r in caplog.records if r.name == "logbroker.topics"]
    assert [r.levelno for r in created] == [logging.INFO]
    expected = "created topic 'logged' (1 partition) on first produce by native client 'first' at 127.0.0.1:"
    assert created[0].getMessage().startswith(expected)


async def test_a_consumers_requests_never_create_a_topic() -> None:
    async with (
        run_broker(group_initial_delay=0) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        response, _ = await client.request(Fetch([FetchPartition("by-fetch", 0, 0)], max_wait_ms=0))
        assert response.partitions[0].error_code == UNKNOWN_TOPIC
        for request in (
            ListOffsets("by-list-offsets", 0, "latest"),
            DescribeTopic("by-describe"),  # a consumer's lookup: it does not allow auto-creation
            JoinGroup("g", ["by-join"]),
            ResetOffsets("g", "by-reset", to="earliest"),
        ):
            with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'by-"):
                await client.request(request)
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'by-consumer'"):
            async for _ in client.consumer("by-consumer"):
                pass
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'by-group'"):
            async with client.group_consumer("g", "by-group"):
                pass
        assert await client.list_topics() == []


async def test_without_auto_creation_a_produce_of_a_missing_topic_is_refused_naming_it() -> None:
    async with (
        run_broker(auto_create_topics=False) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'fresh'"):
            await client.produce("fresh", [b"x"])
        with pytest.raises(UnknownTopicOrPartitionError, match="unknown topic 'fresh'"):
            await client.request(Produce("fresh", 0), batch(1))
        assert await client.list_topics() == []


async def test_a_produce_refused_for_its_own_fields_creates_no_topic() -> None:
    """Regression (review of the reshape): creating the request's topics before checking the
    request left topics behind for requests that were refused."""
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        with pytest.raises(InvalidRequestError, match="acks"):
            await client.request(Produce("by-produce", 0, acks=7), batch(1))
        assert await client.list_topics() == []


async def test_a_produce_refused_for_its_batch_or_partition_creates_no_topic() -> None:
    """Regression (review of issue 14): a native produce created its topic before the broker
    checked the batches and the partition, so a refused produce left a topic behind."""
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        with pytest.raises(CorruptRecordError):
            await client.request(Produce("by-a-bad-batch", 0), b"\x00" * 70)
        with pytest.raises(UnknownTopicOrPartitionError, match="there is no partition 5"):
            await client.request(Produce("by-a-bad-partition", 5), batch(1))
        assert await client.list_topics() == []
        await client.request(Produce("by-a-good-one", 0), batch(1))
        assert [t.name for t in await client.list_topics()] == ["by-a-good-one"]


async def test_a_fetch_naming_a_missing_topic_answers_the_others() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.produce("good", [b"x"])
        response, payload = await client.fetch(
            [
                FetchPartition("good", 0, 0),
                FetchPartition("missing", 0, 0),
                FetchPartition("bad name!", 0, 0),
            ],
            max_wait_ms=0,
        )
        good, missing, bad = response.partitions
        assert (good.topic, good.error_code, good.size) == ("good", 0, len(payload))
        assert (missing.topic, missing.error_code) == ("missing", UNKNOWN_TOPIC)
        assert (bad.topic, bad.error_code) == ("bad name!", 17)  # INVALID_TOPIC_EXCEPTION, that one only
        assert [t.name for t in await client.list_topics()] == ["good"]


async def test_a_native_fetch_waits_for_min_bytes_even_when_its_answer_is_full(autojump_clock: Clock) -> None:
    """Kafka's rule (a full answer returns at once) is not the native protocol's: a native fetch
    waits for `min_bytes` or its wait."""
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"x" * 100] * 10)
        started = trio.current_time()
        response, _ = await client.fetch(
            [FetchPartition("t", 0, 0)], max_bytes=50, min_bytes=100_000, max_wait_ms=1500
        )
        assert trio.current_time() - started >= 1.5
        assert response.partitions[0].size > 0  # the first batch, whole

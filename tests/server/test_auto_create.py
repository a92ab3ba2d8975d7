"""Topics created on first use by the native protocol: where a request may create its topic, and
that a request refused for another reason creates nothing."""

from __future__ import annotations

import pytest
import trio
from trio.abc import Clock

import logbroker
from logbroker.errors import InvalidGroupIdError, InvalidRequestError, NonEmptyGroupError
from logbroker.protocol.messages import Fetch, FetchPartition, JoinGroup, Produce, ResetOffsets
from logbroker.testing import run_broker
from tests.helpers import batch


async def test_a_request_refused_for_its_own_fields_creates_no_topic() -> None:
    """Regression (review of the reshape): creating the request's topics before checking the
    request left topics behind for requests that were refused."""
    async with (
        run_broker(auto_create_topics=True, group_initial_delay=0) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        with pytest.raises(InvalidRequestError, match="acks"):
            await client.request(Produce("by-produce", 0, acks=7), batch(1))
        with pytest.raises(InvalidRequestError, match="negative"):
            await client.request(Fetch([FetchPartition("by-fetch", 0, 0)], max_bytes=-1))
        with pytest.raises(InvalidGroupIdError):
            await client.request(JoinGroup("", ["by-join"]))
        with pytest.raises(InvalidRequestError, match="needs `to` or `timestamp`"):
            await client.request(ResetOffsets("g", "by-reset"))
        assert await client.list_topics() == []
        async with client.group_consumer("busy", "t"):
            with pytest.raises(NonEmptyGroupError):
                await client.reset_offsets("busy", "by-reset-of-a-busy-group", "earliest")
        assert [t.name for t in await client.list_topics()] == ["t"]  # the join's own topic


async def test_a_fetch_naming_a_topic_that_cannot_be_created_answers_the_others() -> None:
    async with (
        run_broker(auto_create_topics=True) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.produce("good", [b"x"])
        response, payload = await client.fetch(
            [FetchPartition("good", 0, 0), FetchPartition("bad name!", 0, 0)], max_wait_ms=0
        )
        good, bad = response.partitions
        assert (good.topic, good.error_code, good.size) == ("good", 0, len(payload))
        assert (bad.topic, bad.error_code) == ("bad name!", 17)  # INVALID_TOPIC_EXCEPTION, that one only


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

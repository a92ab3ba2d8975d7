"""Produce and Fetch of the native protocol: the batches travel as the frame's payload."""

from __future__ import annotations

from collections.abc import Awaitable

from logbroker.engine.fetch import FetchWant
from logbroker.errors import InvalidRequestError, UnknownTopicOrPartitionError
from logbroker.protocol.messages import (
    Fetch,
    FetchedPartition,
    FetchResponse,
    Message,
    Produce,
    ProduceResponse,
)
from logbroker.records.batch import validate_batches
from logbroker.server.connection import BaseConnection

Reply = tuple[Message, bytes]


def produce(conn: BaseConnection, request: Produce, payload: bytes) -> Awaitable[Reply] | None:
    """Appended at once, in the connection's read loop (so appends keep their order); answered
    once as durable as the fsync policy says (acks=1 and -1), or never (acks=0)."""
    engine = conn.engine
    conn.charge_produce(len(payload))
    if request.acks not in (-1, 0, 1):
        raise InvalidRequestError(f"acks must be 0, 1 or -1, not {request.acks}")
    headers = None
    if not engine.topics.exists(request.topic):
        # Created only for a produce that will be appended: a refused one leaves no topic.
        headers = validate_batches(payload)
        count = engine.topics.options.default_partitions
        if engine.topics.options.auto_create_topics and not 0 <= request.partition < count:
            raise UnknownTopicOrPartitionError(
                f"topic {request.topic!r} would be created with {count} partition(s): "
                f"there is no partition {request.partition}"
            )
        engine.topics.auto_create(request.topic, by=conn.requester)
    result = engine.produce.append(request.topic, request.partition, payload, headers=headers)
    if request.acks == 0:
        return None

    async def acked() -> Reply:
        (error,) = await engine.produce.acked([result], request.timeout_ms / 1000)
        if error is not None:
            raise error
        return ProduceResponse(base_offset=result.base_offset, next_offset=result.next_offset), b""

    return acked()


async def fetch(conn: BaseConnection, request: Fetch, payload: bytes) -> Reply:
    """Every requested partition, each with its own error (a topic that does not exist too: a
    fetch never creates one); waits (long poll) until `min_bytes` are there. At most `max_bytes`
    of the request, `max_fetch_bytes` of the server and what the connection's output queue may
    take, except that a partition's first batch comes whole."""
    if request.max_bytes < 0 or request.min_bytes < 0 or request.max_wait_ms < 0:
        raise InvalidRequestError("max_bytes, min_bytes and max_wait_ms must not be negative")
    async with conn.output_budget() as budget:
        parts = await conn.engine.fetch.fetch(
            [FetchWant(p.topic, p.partition, p.offset, p.max_bytes) for p in request.partitions],
            max_bytes=min(request.max_bytes, conn.config.max_fetch_bytes, budget),
            min_bytes=max(request.min_bytes, 1),
            max_wait_ms=request.max_wait_ms,
            full_is_enough=False,
        )
    data = b"".join(part.data for part in parts)
    conn.charge_fetch(len(data))
    answer = [
        FetchedPartition(
            part.topic,
            part.partition,
            part.error.code if part.error else 0,
            part.error.message if part.error else None,
            high_watermark=part.high_watermark,
            log_start_offset=part.log_start_offset,
            log_end_offset=part.log_end_offset,
            size=len(part.data),
        )
        for part in parts
    ]
    return FetchResponse(partitions=answer), data

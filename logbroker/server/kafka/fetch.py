"""Kafka's Fetch: whole stored batches of every requested partition, with a long poll; every
partition is answered, with its own error code (a topic the principal may not read, one that
does not exist - a fetch never creates a topic -, an offset out of range, zstd batches for a
client too old to read them)."""

from __future__ import annotations

from logbroker.engine.fetch import Fetched, FetchWant
from logbroker.errors import OffsetOutOfRangeError, UnknownTopicOrPartitionError
from logbroker.kafka.protocol import KafkaRequest
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import Body

__all__ = ["fetch", "fetch_error"]

#: Fetch v10 is the first a client that reads zstd batches may send.
_ZSTD_FROM = 10


async def fetch(conn: BaseConnection, request: KafkaRequest) -> Body:
    body = request.body
    engine = conn.engine
    wants: list[FetchWant] = []
    for topic in body["topics"]:
        name = topic["topic"]
        refused = conn.denied("read", "topic", name)
        if refused is None and not engine.topics.exists(name):
            refused = UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        wants.extend(
            FetchWant(name, p["partition"], p["fetch_offset"], p["partition_max_bytes"], refused)
            for p in topic["partitions"]
        )
    async with conn.output_budget() as budget:
        parts = await engine.fetch.fetch(
            wants,
            max_bytes=min(max(body["max_bytes"], 0), conn.config.max_fetch_bytes, budget),
            min_bytes=body["min_bytes"],
            max_wait_ms=body["max_wait_ms"],
            first_batch_whole=True,  # KIP-74
            accepts_zstd=request.version >= _ZSTD_FROM,
        )
    conn.charge_fetch(sum(len(part.data) for part in parts))
    answers = iter(parts)
    topics = [
        {"topic": topic["topic"], "partitions": [_answer(next(answers)) for _ in topic["partitions"]]}
        for topic in body["topics"]
    ]
    return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": topics}


def _answer(part: Fetched) -> Body:
    answer: Body = {
        "partition_index": part.partition,
        "error_code": part.error.code if part.error else 0,
        "high_watermark": part.high_watermark,
        "last_stable_offset": part.high_watermark,
        "log_start_offset": part.log_start_offset,
        "aborted_transactions": [],
        "preferred_read_replica": -1,
        "records": part.data,
    }
    if isinstance(part.error, OffsetOutOfRangeError):
        answer.update(high_watermark=part.log_end_offset, last_stable_offset=part.log_end_offset)
    return answer


def fetch_error(body: Body, code: int, message: str | None = None) -> Body:
    return {
        "throttle_time_ms": 0,
        "error_code": code,
        "responses": [
            {
                "topic": t["topic"],
                "partitions": [
                    {
                        "partition_index": p["partition"],
                        "error_code": code,
                        "high_watermark": -1,
                        "records": b"",
                    }
                    for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ],
    }

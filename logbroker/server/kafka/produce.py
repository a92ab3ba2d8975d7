"""Kafka's Produce: each partition's batch is appended the moment the request is read (in
arrival order), and the answer waits until the appends are as durable as the fsync policy says.

A topic that does not exist is created with the default partition count when the broker
creates topics on first produce and the principal may create it (as a Metadata request that
allows auto-creation would have); otherwise its partitions are answered UNKNOWN_TOPIC_OR_PARTITION
(or TOPIC_AUTHORIZATION_FAILED, for a principal that may not create it).

Refused with an error code per partition, never by closing the connection: message formats 0
and 1 (Produce before v3), acks other than 0, 1, -1, transactions (not served), a topic the
principal may not write or create, a topic that does not exist and is not created, and anything
the broker core refuses. acks=0 is never answered, whatever happened.
"""

from __future__ import annotations

from collections.abc import Awaitable

from logbroker.broker.broker import ProduceResult
from logbroker.errors import (
    CoordinatorNotAvailableError,
    InvalidRecordError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    LogbrokerError,
    UnknownTopicOrPartitionError,
    UnsupportedCompressionError,
    UnsupportedVersionError,
)
from logbroker.kafka.apis import PRODUCE
from logbroker.kafka.protocol import KafkaRequest
from logbroker.records.batch import BATCH_OVERHEAD, BatchHeader, check_records, parse_header, validate_batch
from logbroker.records.compression import Compression
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import Body, code_of

__all__ = ["produce", "produce_error"]


def produce(conn: BaseConnection, request: KafkaRequest) -> Awaitable[Body] | None:
    body = request.body
    engine = conn.engine
    refusal: LogbrokerError | None = None
    if request.version < PRODUCE.refused_below:
        refusal = UnsupportedVersionError("message formats 0 and 1 are not stored here (Produce v3+)")
    elif body["acks"] not in (-1, 0, 1):
        refusal = InvalidRequiredAcksError(f"acks must be 0, 1 or -1, not {body['acks']}")
    elif body["transactional_id"] is not None:
        refusal = InvalidRequestError("transactions are not served (docs/kafka.md)")
    elif engine.closing:
        refusal = CoordinatorNotAvailableError("the broker is shutting down")
    size = 0
    #: (topic, partition, what was appended or why not), in request order.
    results: list[tuple[str, int, ProduceResult | LogbrokerError | BaseException]] = []
    for topic in body["topic_data"]:
        name = topic["name"]
        denied = refusal or conn.denied("write", "topic", name)
        for part in topic["partition_data"]:
            index, records = part["index"], part["records"]
            size += len(records or b"")
            if denied is not None:
                results.append((name, index, denied))
                continue
            try:
                headers = _one_batch(records, request.version)
                _create_if_missing(conn, name)
                results.append((name, index, engine.produce.append(name, index, records, headers=headers)))
            except Exception as exc:
                results.append((name, index, exc))
    conn.charge_produce(size)
    if body["acks"] == 0:
        return None

    async def acked() -> Body:
        appended = [r if isinstance(r, ProduceResult) else None for _, _, r in results]
        waited = await engine.produce.acked(appended, max(body["timeout_ms"], 0) / 1000)
        by_topic: dict[str, list[Body]] = {}
        for (name, index, result), error in zip(results, waited, strict=True):
            code = code_of(result) if not isinstance(result, ProduceResult) else (error.code if error else 0)
            ok = isinstance(result, ProduceResult)
            by_topic.setdefault(name, []).append(
                {
                    "index": index,
                    "error_code": code,
                    "base_offset": result.base_offset if ok and code == 0 else -1,  # type: ignore[union-attr]
                    "log_append_time_ms": -1,
                    "log_start_offset": result.log_start_offset if ok else -1,  # type: ignore[union-attr]
                }
            )
        return {
            "responses": [{"name": n, "partition_responses": p} for n, p in by_topic.items()],
            "throttle_time_ms": 0,
        }

    return acked()


def _create_if_missing(conn: BaseConnection, name: str) -> None:
    """Create topic `name` for this producer if it is missing and the broker creates topics on
    first produce; raises why not (auto-creation off, no create right, a name not valid)."""
    topics = conn.engine.topics
    if topics.exists(name):
        return
    if not topics.options.auto_create_topics:
        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
    denied = conn.denied("create", "topic", name)
    if denied is not None:
        raise denied
    topics.auto_create(name, by=conn.requester)


def produce_error(body: Body, code: int, message: str | None = None) -> Body:
    return {
        "throttle_time_ms": 0,
        "responses": [
            {
                "name": t["name"],
                "partition_responses": [
                    {"index": p["index"], "error_code": code, "base_offset": -1} for p in t["partition_data"]
                ],
            }
            for t in body["topic_data"]
        ],
    }


def _one_batch(records: memoryview | None, version: int) -> list[BatchHeader]:
    """Produce v3+ carries exactly one RecordBatch per partition: its header, checked once
    (with its CRC) and handed on, so the broker core does not parse it again."""
    if records is None or len(records) < BATCH_OVERHEAD:
        raise InvalidRecordError("a produce must carry one record batch per partition")
    if records[16] != 2:  # the magic byte
        raise InvalidRecordError(f"message format v{records[16]}: Produce v3+ carries record batches (v2)")
    header = parse_header(records, 0)
    if header.size != len(records):
        raise InvalidRecordError("a produce must carry exactly one record batch per partition")
    if header.compression == Compression.ZSTD and version < 7:
        raise UnsupportedCompressionError("zstd batches need Produce v7 or later")
    if header.compression == Compression.NONE:
        # Kafka's log validator walks the records; Kafka clients trust the count it checked.
        check_records(records, 0, header)
    validate_batch(records, 0, header)  # the CRC and the rest of the format's rules
    return [header]

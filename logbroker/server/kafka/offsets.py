"""ListOffsets, OffsetCommit and OffsetFetch: where a Kafka consumer starts, and the offsets its
group commits (in `__offsets`, shared with native groups)."""

from __future__ import annotations

from collections import Counter

from logbroker.errors import InvalidRequestError, UnknownTopicOrPartitionError
from logbroker.kafka.protocol import KafkaRequest
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import Body, code_of
from logbroker.server.security import Need

__all__ = [
    "commit_needs",
    "fetch_offsets_needs",
    "list_offsets",
    "list_offsets_needs",
    "offset_commit",
    "offset_fetch",
    "partitions_error",
]

_LATEST, _EARLIEST = -1, -2


def list_offsets_needs(request: KafkaRequest) -> list[Need]:
    return [("describe", "topic", t["name"]) for t in request.body["topics"]]


def list_offsets(conn: BaseConnection, request: KafkaRequest) -> Body:
    body = request.body
    topics = conn.engine.topics
    asked = Counter((t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"])
    answer = []
    for topic in body["topics"]:
        name = topic["name"]
        parts = []
        for wanted in topic["partitions"]:
            index = wanted["partition_index"]
            stamp = wanted["timestamp"]
            part = {"partition_index": index, "error_code": 0, "timestamp": -1, "offset": -1}
            try:
                if asked[(name, index)] > 1:
                    raise InvalidRequestError(f"partition {index} of {name!r} is asked for twice")
                if not topics.exists(name):  # a consumer's request never creates a topic
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                if stamp in (_LATEST, _EARLIEST):
                    part["offset"] = topics.list_offset(
                        name, index, "latest" if stamp == _LATEST else "earliest"
                    )
                elif stamp < 0:
                    raise InvalidRequestError(f"timestamp {stamp} is not served (only -1, -2 and times)")
                else:
                    found = topics.list_offset(name, index, stamp)
                    if found is not None:
                        part.update(offset=found, timestamp=topics.timestamp_at(name, index, found))
            except Exception as exc:
                part["error_code"] = code_of(exc)
            parts.append(part)
        answer.append({"name": name, "partitions": parts})
    return {"throttle_time_ms": 0, "topics": answer}


def partitions_error(body: Body, code: int, message: str | None = None) -> Body:
    """ListOffsets' and OffsetCommit's answer: the code for every partition asked for."""
    return {
        "throttle_time_ms": 0,
        "topics": [
            {
                "name": t["name"],
                "partitions": [
                    {"partition_index": p["partition_index"], "error_code": code} for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ],
    }


def commit_needs(request: KafkaRequest) -> list[Need]:
    body = request.body
    return [("read", "group", body["group_id"])] + [("read", "topic", t["name"]) for t in body["topics"]]


async def offset_commit(conn: BaseConnection, request: KafkaRequest) -> Body:
    """Answered once the offsets are as durable as the fsync policy says."""
    body = request.body
    offsets = {
        (t["name"], p["partition_index"]): (p["committed_offset"], p["committed_metadata"])
        for t in body["topics"]
        for p in t["partitions"]
    }
    try:
        codes = await conn.engine.classic.commit(
            body["group_id"], body["generation_id_or_member_epoch"], body["member_id"], offsets
        )
    except Exception as exc:
        codes = dict.fromkeys(offsets, code_of(exc))
    return {
        "throttle_time_ms": 0,
        "topics": [
            {
                "name": t["name"],
                "partitions": [
                    {
                        "partition_index": p["partition_index"],
                        "error_code": codes[(t["name"], p["partition_index"])],
                    }
                    for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ],
    }


def fetch_offsets_needs(request: KafkaRequest) -> list[Need]:
    body = request.body
    topics = body["topics"] or []
    return [("describe", "group", body["group_id"])] + [("describe", "topic", t["name"]) for t in topics]


def offset_fetch(conn: BaseConnection, request: KafkaRequest) -> Body:
    """A group's committed offsets (either kind of group); every topic's, when none is named:
    then only the topics the principal may describe."""
    body = request.body
    wanted = None
    if body["topics"] is not None:
        wanted = [(t["name"], p) for t in body["topics"] for p in t["partition_indexes"]]
    committed = conn.engine.groups.committed(body["group_id"], wanted)
    by_topic: dict[str, list[Body]] = {}
    for (topic, partition), (offset, metadata) in committed.items():
        if wanted is None and not conn.may("describe", "topic", topic):
            continue
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "committed_offset": offset,
                "committed_leader_epoch": -1,
                "metadata": metadata if offset >= 0 else "",
                "error_code": 0,
            }
        )
    return {
        "throttle_time_ms": 0,
        "topics": [{"name": t, "partitions": p} for t, p in by_topic.items()],
        "error_code": 0,
    }


def offset_fetch_error(body: Body, code: int, message: str | None = None) -> Body:
    answer: Body = {"throttle_time_ms": 0, "error_code": code}
    if body["topics"] is not None:
        answer["topics"] = [
            {
                "name": t["name"],
                "partitions": [
                    {"partition_index": p, "committed_offset": -1, "metadata": None, "error_code": code}
                    for p in t["partition_indexes"]
                ],
            }
            for t in body["topics"]
        ]
    return answer

"""ApiVersions, Metadata, FindCoordinator and InitProducerId: what a Kafka client asks before it
produces or consumes."""

from __future__ import annotations

from logbroker.broker.names import check_topic_name, is_internal
from logbroker.errors import (
    ClusterAuthorizationFailedError,
    CoordinatorNotAvailableError,
    InvalidRequestError,
    TopicAuthorizationFailedError,
)
from logbroker.kafka.protocol import KafkaRequest, served_versions
from logbroker.security.acls import CLUSTER
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import CLUSTER_ID, NODE_ID, Body, code_of

__all__ = [
    "api_versions",
    "find_coordinator",
    "find_coordinator_needs",
    "init_producer_id",
    "metadata",
    "metadata_error",
]


def api_versions(conn: BaseConnection, request: KafkaRequest) -> Body:
    return {"error_code": 0, "api_keys": served_versions(), "throttle_time_ms": 0}


def metadata(conn: BaseConnection, request: KafkaRequest) -> Body:
    """The broker, and each topic asked for (every topic when none is named) with its
    partitions. Checked per topic: a topic named that the principal may not describe is answered
    with TOPIC_AUTHORIZATION_FAILED after the others, one it may not describe is left out of an
    all-topics answer. It creates the missing topics it names (as a Produce does) when the
    client allows it (producers do; consumers ask with allow_auto_topic_creation=false), the
    broker creates topics on first produce, and the principal may create every missing topic it
    names (one it may not turns auto-creation off for the whole request)."""
    body = request.body
    engine = conn.engine
    host, port = conn.advertised
    wanted = body["topics"]
    create = bool(body["allow_auto_topic_creation"])
    denied: list[str] = []
    if wanted is None or (request.version == 0 and not wanted):
        names = [info.name for info in engine.topics.list(include_internal=True)]
    else:
        names = list(dict.fromkeys(t["name"] for t in wanted))  # each topic once, as Kafka does
        denied = [name for name in names if not conn.may("describe", "topic", name)]
        names = [name for name in names if name not in denied]
        if create and any(
            not engine.topics.exists(name) and not conn.may("create", "topic", name) for name in names
        ):
            create = False
    topics = []
    for name in names:
        if not conn.may("describe", "topic", name):
            continue  # every topic answered is checked, whatever the request's form
        try:
            if not engine.topics.exists(name):
                check_topic_name(name)
                if create:
                    engine.topics.auto_create(name, by=conn.requester)
            count = engine.topics.partition_count(name)
        except Exception as exc:
            topics.append({"error_code": code_of(exc), "name": name, "is_internal": False, "partitions": []})
            continue
        topics.append(
            {
                "error_code": 0,
                "name": name,
                "is_internal": is_internal(name),
                "partitions": [
                    {
                        "error_code": 0,
                        "partition_index": p,
                        "leader_id": NODE_ID,
                        "replica_nodes": [NODE_ID],
                        "isr_nodes": [NODE_ID],
                    }
                    for p in range(count)
                ],
            }
        )
    topics += [
        {
            "error_code": TopicAuthorizationFailedError.code,
            "name": name,
            "is_internal": False,
            "partitions": [],
        }
        for name in denied
    ]
    return {
        "throttle_time_ms": 0,
        "brokers": [{"node_id": NODE_ID, "host": host, "port": port, "rack": None}],
        "cluster_id": CLUSTER_ID,
        "controller_id": NODE_ID,
        "topics": topics,
    }


def metadata_error(body: Body, code: int, message: str | None = None) -> Body:
    topics = body["topics"] or []
    return {
        "throttle_time_ms": 0,
        "topics": [{"error_code": code, "name": t["name"], "partitions": []} for t in topics],
    }


def find_coordinator_needs(request: KafkaRequest) -> list[tuple[str, str, str]]:
    body = request.body
    return [("describe", "group", body["key"])] if body["key_type"] == 0 else []


def find_coordinator(conn: BaseConnection, request: KafkaRequest) -> Body:
    host, port = conn.advertised
    if request.body["key_type"] != 0:
        return {
            "throttle_time_ms": 0,
            "error_code": CoordinatorNotAvailableError.code,
            "error_message": "transactions are not served by logbroker",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "error_message": None,
        "node_id": NODE_ID,
        "host": host,
        "port": port,
    }


def init_producer_id(conn: BaseConnection, request: KafkaRequest) -> Body:
    """A producer id for an idempotent producer (epoch 0). Transactions are not served. Since
    Kafka 2.8 an idempotent producer needs WRITE on some topic (or on the cluster)."""
    refused = {"throttle_time_ms": 0, "producer_id": -1, "producer_epoch": -1}
    if (
        conn.principal is not None
        and not conn.security.may_write_somewhere(conn.principal)
        and not conn.may("write", "cluster", CLUSTER)
    ):
        return {**refused, "error_code": ClusterAuthorizationFailedError.code}
    if request.body["transactional_id"] is not None:
        return {**refused, "error_code": InvalidRequestError.code}
    try:
        producer_id = conn.engine.topics.allocate_producer_id()
    except Exception as exc:
        return {**refused, "error_code": code_of(exc)}
    return {"throttle_time_ms": 0, "error_code": 0, "producer_id": producer_id, "producer_epoch": 0}

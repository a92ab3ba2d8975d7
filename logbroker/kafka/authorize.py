"""What each Kafka request needs the ACLs to allow, as Kafka's authorizer asks it.

Produce and Fetch are checked per topic (a denied topic gets TOPIC_AUTHORIZATION_FAILED, the
others are served: see `KafkaHandler.produce_now` and `fetch`); Metadata per topic too (a denied
topic is answered with the error, an unnamed one is left out of an all-topics answer). Other
requests are checked whole before any work: one denied item refuses the request, every item
carrying the error code. ListGroups and OffsetFetch of every topic show only what the principal
may describe.
"""

from __future__ import annotations

from typing import Any

from logbroker.broker.broker import Broker
from logbroker.kafka.apis import (
    ALTER_CONFIGS,
    CREATE_TOPICS,
    DELETE_TOPICS,
    DESCRIBE_CONFIGS,
    DESCRIBE_GROUPS,
    FIND_COORDINATOR,
    HEARTBEAT,
    INCREMENTAL_ALTER_CONFIGS,
    JOIN_GROUP,
    LEAVE_GROUP,
    LIST_GROUPS,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    SYNC_GROUP,
)
from logbroker.kafka.protocol import KafkaRequest
from logbroker.security.acls import CLUSTER
from logbroker.server.security import Need, Security

__all__ = ["filter_body", "metadata_refusals", "needs_of"]

_TOPIC_RESOURCE = 2  # DescribeConfigs resource types
_BROKER_RESOURCE = 4


def needs_of(request: KafkaRequest) -> list[Need]:
    api = request.api
    body = request.body
    if api is LIST_OFFSETS:
        return [("describe", "topic", t["name"]) for t in body["topics"]]
    if api is FIND_COORDINATOR:
        return [("describe", "group", body["key"])] if body["key_type"] == 0 else []
    if api in (JOIN_GROUP, SYNC_GROUP, HEARTBEAT, LEAVE_GROUP):
        return [("read", "group", body["group_id"])]
    if api is OFFSET_COMMIT:
        return [("read", "group", body["group_id"])] + [("read", "topic", t["name"]) for t in body["topics"]]
    if api is OFFSET_FETCH:
        topics = body["topics"] or []
        return [("describe", "group", body["group_id"])] + [("describe", "topic", t["name"]) for t in topics]
    if api is DESCRIBE_GROUPS:
        return [("describe", "group", name) for name in body["groups"]]
    if api is CREATE_TOPICS:
        return [("create", "topic", t["name"]) for t in body["topics"]]
    if api is DELETE_TOPICS:
        return [("delete", "topic", name) for name in body["topic_names"]]
    if api is ALTER_CONFIGS or api is INCREMENTAL_ALTER_CONFIGS:
        return [
            ("alter", "topic", r["resource_name"])
            if r["resource_type"] == _TOPIC_RESOURCE
            else ("alter", "cluster", CLUSTER)
            for r in body["resources"]
        ]
    if api is DESCRIBE_CONFIGS:
        needs: list[Need] = []
        for resource in body["resources"]:
            if resource["resource_type"] == _TOPIC_RESOURCE:
                needs.append(("describe", "topic", resource["resource_name"]))
            elif resource["resource_type"] == _BROKER_RESOURCE:
                needs.append(("describe", "cluster", CLUSTER))
        return needs
    return []


def metadata_refusals(request: KafkaRequest, principal: str, security: Security, broker: Broker) -> list[str]:
    """Take the topics the principal may not describe out of a Metadata request (they are
    answered with the error by `filter_body`), and turn auto-creation off when it would
    create a topic the principal may not create. Returns the names taken out."""
    body = request.body
    if not security.authorize or not body["topics"]:
        return []
    denied = [
        t["name"] for t in body["topics"] if not security.may(principal, "describe", "topic", t["name"])
    ]
    if denied:
        refused = set(denied)
        body["topics"] = [t for t in body["topics"] if t["name"] not in refused]
    if body.get("allow_auto_topic_creation") and any(
        not broker.has_topic(t["name"]) and not security.may(principal, "create", "topic", t["name"])
        for t in body["topics"]
    ):
        body["allow_auto_topic_creation"] = False
    return denied


def filter_body(
    request: KafkaRequest, body: dict[str, Any], principal: str, security: Security, denied: list[str]
) -> None:
    """Cut an answer down to what the principal may describe, and add the refused topics of a
    Metadata request."""
    if not security.authorize:
        return
    api = request.api
    may = security.may
    if api is METADATA:
        # Every topic answered is checked, whatever the request's form ("all topics" is null in
        # v1+, and an empty list in v0).
        body["topics"] = [t for t in body["topics"] if may(principal, "describe", "topic", t["name"])]
        body["topics"] += [
            {"error_code": 29, "name": name, "is_internal": False, "partitions": []} for name in denied
        ]
    elif api is LIST_GROUPS:
        body["groups"] = [g for g in body["groups"] if may(principal, "describe", "group", g["group_id"])]
    elif api is OFFSET_FETCH and request.body["topics"] is None:
        body["topics"] = [t for t in body["topics"] if may(principal, "describe", "topic", t["name"])]

"""What each Kafka request needs the ACLs to allow, as Kafka's authorizer asks it.

Produce and Fetch are checked per topic (a denied topic gets TOPIC_AUTHORIZATION_FAILED, the
others are served: see `KafkaHandler.produce_now` and `fetch`); Metadata per topic too (a denied
topic is answered with the error, an unnamed one is left out of an all-topics answer). Other
requests are checked whole before any work: one denied item refuses the request, every item
carrying the error code. ListGroups and OffsetFetch of every topic show only what the principal
may describe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

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
from logbroker.kafka.handlers import error_body
from logbroker.kafka.protocol import KafkaRequest
from logbroker.security.acls import CLUSTER
from logbroker.server.security import Need, Security

__all__ = ["add_refused", "filter_body", "item_refusals", "metadata_refusals", "needs_of"]

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
    return []


def _resource_need(operation: str) -> Callable[[dict[str, Any]], Need | None]:
    def need(resource: dict[str, Any]) -> Need | None:
        if resource["resource_type"] == _TOPIC_RESOURCE:
            return (operation, "topic", resource["resource_name"])
        if resource["resource_type"] == _BROKER_RESOURCE:
            return (operation, "cluster", CLUSTER)
        return None  # a type not served: the handler answers it

    return need


# Admin requests answered item by item, as Kafka does: (the request's list, the answer's list,
# what one item needs).
_PER_ITEM: dict[int, tuple[str, str, Callable[[Any], Need | None]]] = {
    CREATE_TOPICS.key: ("topics", "topics", lambda t: ("create", "topic", t["name"])),
    DELETE_TOPICS.key: ("topic_names", "responses", lambda name: ("delete", "topic", name)),
    DESCRIBE_GROUPS.key: ("groups", "groups", lambda name: ("describe", "group", name)),
    DESCRIBE_CONFIGS.key: ("resources", "results", _resource_need("describe")),
    ALTER_CONFIGS.key: ("resources", "responses", _resource_need("alter")),
    INCREMENTAL_ALTER_CONFIGS.key: ("resources", "responses", _resource_need("alter")),
}


def item_refusals(request: KafkaRequest, principal: str, security: Security) -> KafkaRequest | None:
    """Take the items the principal may not touch out of an admin request (CreateTopics,
    DeleteTopics, DescribeGroups, DescribeConfigs, AlterConfigs); returns a request of just
    those, for `error_body` to answer, or None when every item is allowed."""
    entry = _PER_ITEM.get(request.api.key)
    if entry is None or not security.authorize:
        return None
    key, _, need = entry
    allowed: list[Any] = []
    denied: list[Any] = []
    for item in request.body[key]:
        wanted = need(item)
        (allowed if wanted is None or security.may(principal, *wanted) else denied).append(item)
    if not denied:
        return None
    request.body[key] = allowed
    return attrs.evolve(request, body={**request.body, key: denied})


def add_refused(request: KafkaRequest, body: dict[str, Any], refused: KafkaRequest) -> None:
    """Answer the refused items of `request` beside the others (TOPIC_, GROUP_ or
    CLUSTER_AUTHORIZATION_FAILED by what each is)."""
    key, answer_key, need = _PER_ITEM[request.api.key]
    codes = {"topic": 29, "group": 30, "cluster": 31}
    for item in refused.body[key]:
        wanted = need(item)
        code = codes[wanted[1]] if wanted is not None else 29
        one = attrs.evolve(refused, body={**refused.body, key: [item]})
        body[answer_key] = list(body.get(answer_key) or []) + error_body(one, code)[answer_key]


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

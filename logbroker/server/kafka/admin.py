"""Kafka's admin requests on topics and configs: CreateTopics, DeleteTopics, DescribeConfigs,
AlterConfigs and IncrementalAlterConfigs. Each item (topic, resource) is answered on its own, as
Kafka does: one that fails does not stop the others, and one the principal may not touch is
refused alone (see the `items` of their endpoints)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from logbroker import __version__
from logbroker.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidRequestError,
)
from logbroker.kafka.protocol import KafkaRequest
from logbroker.security.acls import CLUSTER
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import NODE_ID, Body, code_of
from logbroker.server.security import Need

__all__ = [
    "alter_configs",
    "configs_error",
    "create_topics",
    "create_topics_error",
    "delete_topics",
    "delete_topics_error",
    "describe_configs",
    "describe_configs_error",
    "incremental_alter_configs",
    "resource_need",
]

_TOPIC_RESOURCE = 2  # DescribeConfigs / AlterConfigs resource types
_BROKER_RESOURCE = 4

# The broker-level names of the topic settings (Kafka's broker defaults of topic configs).
_BROKER_NAMES = {
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "max.message.bytes": "message.max.bytes",
    "message.timestamp.after.max.ms": "log.message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms": "log.message.timestamp.before.max.ms",
    "index.interval.bytes": "log.index.interval.bytes",
    "cleanup.policy": "log.cleanup.policy",
    "message.timestamp.type": "log.message.timestamp.type",
}

# DescribeConfigs config sources.
_DYNAMIC_TOPIC_CONFIG = 1
_STATIC_BROKER_CONFIG = 4
_DEFAULT_CONFIG = 5


def create_topics(conn: BaseConnection, request: KafkaRequest) -> Body:
    body = request.body
    asked = Counter(topic["name"] for topic in body["topics"])
    results = []
    for topic in body["topics"]:
        name = topic["name"]
        try:
            if asked[name] > 1:  # Kafka refuses every copy and creates none
                raise InvalidRequestError(f"topic {name!r} is named more than once")
            count = _partitions_wanted(topic)
            config = {c["name"]: c["value"] for c in topic["configs"] if c["value"] is not None}
            conn.engine.topics.create(name, count, config, validate_only=body["validate_only"])
        except Exception as exc:
            results.append({"name": name, "error_code": code_of(exc), "error_message": str(exc)})
            continue
        results.append({"name": name, "error_code": 0, "error_message": None})
    return {"throttle_time_ms": 0, "topics": results}


def create_topics_error(body: Body, code: int, message: str | None = None) -> Body:
    return {
        "throttle_time_ms": 0,
        "topics": [{"name": t["name"], "error_code": code} for t in body["topics"]],
    }


def _partitions_wanted(topic: dict[str, Any]) -> int | None:
    factor = topic["replication_factor"]
    assignments = topic["assignments"]
    if factor not in (-1, 1) and not assignments:
        raise InvalidReplicationFactorError(
            f"replication factor {factor}: this broker is one node, so -1 or 1"
        )
    if assignments:
        if topic["num_partitions"] != -1 or factor != -1:
            raise InvalidRequestError("give either assignments or a partition count and replication factor")
        for a in assignments:
            if a["broker_ids"] != [NODE_ID]:
                raise InvalidRequestError(f"partitions can only be placed on broker {NODE_ID}")
        if sorted(a["partition_index"] for a in assignments) != list(range(len(assignments))):
            raise InvalidPartitionsError("assignments must name partitions 0 to n-1")
        return len(assignments)
    count = topic["num_partitions"]
    return None if count == -1 else int(count)


def delete_topics(conn: BaseConnection, request: KafkaRequest) -> Body:
    names = request.body["topic_names"]
    asked = Counter(names)
    responses = []
    for name in names:
        try:
            if asked[name] > 1:  # Kafka refuses every copy and deletes none
                raise InvalidRequestError(f"topic {name!r} is named more than once")
            conn.engine.topics.delete(name)
        except Exception as exc:
            responses.append({"name": name, "error_code": code_of(exc)})
            continue
        responses.append({"name": name, "error_code": 0})
    return {"throttle_time_ms": 0, "responses": responses}


def delete_topics_error(body: Body, code: int, message: str | None = None) -> Body:
    return {
        "throttle_time_ms": 0,
        "responses": [{"name": name, "error_code": code} for name in body["topic_names"]],
    }


def resource_need(operation: str, resource: dict[str, Any]) -> Need | None:
    """What one resource of DescribeConfigs or (Incremental)AlterConfigs needs (None: a type
    not served, which the handler answers)."""
    if resource["resource_type"] == _TOPIC_RESOURCE:
        return (operation, "topic", resource["resource_name"])
    if resource["resource_type"] == _BROKER_RESOURCE:
        return (operation, "cluster", CLUSTER)
    return None


def describe_configs(conn: BaseConnection, request: KafkaRequest) -> Body:
    results = []
    unique = {(r["resource_type"], r["resource_name"]): r for r in request.body["resources"]}
    for resource in unique.values():  # each resource once: the answer is far larger than the ask
        kind, name, keys = (
            resource["resource_type"],
            resource["resource_name"],
            resource["configuration_keys"],
        )
        result: Body = {
            "error_code": 0,
            "error_message": None,
            "resource_type": kind,
            "resource_name": name,
            "configs": [],
        }
        try:
            if kind == _TOPIC_RESOURCE:
                entries = _topic_configs(conn, name)
            elif kind == _BROKER_RESOURCE and name == str(NODE_ID):
                entries = _broker_configs(conn)
            elif kind == _BROKER_RESOURCE and name == "":
                entries = []  # the cluster-wide dynamic defaults: there are none
            elif kind == _BROKER_RESOURCE:
                raise InvalidRequestError(f"unexpected broker id {name!r}: this is broker {NODE_ID}")
            else:
                raise InvalidRequestError(f"resource type {kind} is not described (2: topic, 4: broker)")
        except Exception as exc:
            result.update(error_code=code_of(exc), error_message=str(exc))
            results.append(result)
            continue
        result["configs"] = [
            {
                "name": key,
                "value": value,
                "read_only": kind == _BROKER_RESOURCE,
                "config_source": source,
                "is_sensitive": False,
                "synonyms": [],
                "config_type": 0,
                "documentation": None,
            }
            for key, value, source in entries
            if keys is None or key in keys
        ]
        results.append(result)
    return {"throttle_time_ms": 0, "results": results}


def describe_configs_error(body: Body, code: int, message: str | None = None) -> Body:
    return {"throttle_time_ms": 0, "results": _resources_error(body, code)}


def alter_configs(conn: BaseConnection, request: KafkaRequest) -> Body:
    """The listed settings become the topic's whole set."""
    return _alter(conn, request.body, incremental=False)


def incremental_alter_configs(conn: BaseConnection, request: KafkaRequest) -> Body:
    """Each listed setting is set or deleted; the others keep their values."""
    return _alter(conn, request.body, incremental=True)


def configs_error(body: Body, code: int, message: str | None = None) -> Body:
    return {"throttle_time_ms": 0, "responses": _resources_error(body, code)}


def _resources_error(body: Body, code: int) -> list[Body]:
    return [
        {"error_code": code, "resource_type": r["resource_type"], "resource_name": r["resource_name"]}
        for r in body["resources"]
    ]


def _alter(conn: BaseConnection, body: Body, *, incremental: bool) -> Body:
    """Topic settings changed in place. Each resource is checked whole: a bad setting changes
    nothing of its topic. The broker's settings are read-only. A resource named twice, or a
    setting named twice in a resource, is refused (as Kafka does): applied in turn, the later
    would silently undo the earlier."""
    responses = []
    named = Counter((r["resource_type"], r["resource_name"]) for r in body["resources"])
    for resource in body["resources"]:
        kind, name = resource["resource_type"], resource["resource_name"]
        answer: Body = {"error_code": 0, "error_message": None, "resource_type": kind, "resource_name": name}
        try:
            if named[kind, name] > 1:
                raise InvalidRequestError(f"resource {name!r} is named more than once")
            settings = Counter(config["name"] for config in resource["configs"])
            if settings and max(settings.values()) > 1:
                raise InvalidRequestError(f"{settings.most_common(1)[0][0]} is named more than once")
            if kind == _BROKER_RESOURCE:
                raise InvalidRequestError("the broker's settings are read-only here: set them at start")
            if kind != _TOPIC_RESOURCE:
                raise InvalidRequestError(f"resource type {kind} cannot be altered (2: topic)")
            changes: dict[str, str | None] = {}
            for config in resource["configs"]:
                operation = config["config_operation"] if incremental else 0
                if operation == 1:
                    changes[config["name"]] = None
                elif operation == 0:
                    changes[config["name"]] = config["value"]
                else:  # APPEND and SUBTRACT are for list settings: a topic has none here
                    raise InvalidConfigError(
                        f"{config['name']}: operation {operation} is not supported (0 set, 1 delete)"
                    )
            conn.engine.topics.alter(
                name, changes, replace=not incremental, validate_only=body["validate_only"]
            )
        except Exception as exc:
            answer.update(error_code=code_of(exc), error_message=str(exc))
        responses.append(answer)
    return {"throttle_time_ms": 0, "responses": responses}


def _topic_configs(conn: BaseConnection, name: str) -> list[tuple[str, str, int]]:
    topics = conn.engine.topics
    info = topics.describe(name)
    defaults = topics.options.topic_defaults.to_kafka()
    return [
        (key, value, _DEFAULT_CONFIG if defaults.get(key) == value else _DYNAMIC_TOPIC_CONFIG)
        for key, value in info.config.items()
    ]


def _broker_configs(conn: BaseConnection) -> list[tuple[str, str, int]]:
    options = conn.engine.topics.options
    values = {
        "num.partitions": str(options.default_partitions),
        "auto.create.topics.enable": str(options.auto_create_topics).lower(),
        "default.replication.factor": "1",
        "logbroker.fsync": str(options.fsync),
        "logbroker.version": __version__,
    }
    topic_defaults = options.topic_defaults.to_kafka()
    values.update({name: topic_defaults[key] for key, name in _BROKER_NAMES.items()})
    return [(key, value, _STATIC_BROKER_CONFIG) for key, value in sorted(values.items())]

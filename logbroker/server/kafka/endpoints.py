"""Every Kafka API served, declared once: its schemas (`logbroker.kafka.apis`), its handler, what
the ACLs must allow, and the shape its errors take.

A handler answers with a response body at once, or returns an awaitable that the connection runs
as a task of its own (a request that waits: for an fsync, records, a rebalance); None is no
answer at all (a produce with acks=0). Every answer leaves in request order.

Authorization, as Kafka's authorizer asks it:

- `needs`: what the whole request needs, checked before its work; refused, it is answered with
  `error` (the API's own shape, the code wherever its response has room for one);
- `items`: admin requests answered item by item (CreateTopics, DeleteTopics, DescribeGroups,
  DescribeConfigs, AlterConfigs): an item the principal may not touch is answered with
  TOPIC_, GROUP_ or CLUSTER_AUTHORIZATION_FAILED, the others are served;
- Produce, Fetch and Metadata are checked per topic by their handlers (a denied topic is
  answered with the error, the others are served); ListGroups and OffsetFetch of every topic
  show only what the principal may describe.

ApiVersions and the SASL requests are taken before a login (`login`); on a broker that requires
one, anything else closes the connection, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from logbroker.kafka.apis import (
    ALTER_CONFIGS,
    API_VERSIONS,
    CREATE_TOPICS,
    DELETE_TOPICS,
    DESCRIBE_CONFIGS,
    DESCRIBE_GROUPS,
    FETCH,
    FIND_COORDINATOR,
    HEARTBEAT,
    INCREMENTAL_ALTER_CONFIGS,
    INIT_PRODUCER_ID,
    JOIN_GROUP,
    LEAVE_GROUP,
    LIST_GROUPS,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    SYNC_GROUP,
    Api,
)
from logbroker.kafka.protocol import KafkaRequest
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka import admin, fetch, groups, metadata, offsets, produce, session
from logbroker.server.kafka.answers import Body, ErrorBody
from logbroker.server.security import Need

__all__ = ["ENDPOINTS", "Endpoint", "Items"]

Handler = Callable[[BaseConnection, KafkaRequest], Body | Awaitable[Body] | None]


def _nothing(request: KafkaRequest) -> list[Need]:
    return []


@attrs.frozen
class Items:
    """An admin request answered item by item: the request's list, the answer's list, and what
    one item needs (None: nothing, an item of a kind the handler refuses itself)."""

    request_key: str
    answer_key: str
    need: Callable[[Any], Need | None]


@attrs.frozen
class Endpoint:
    api: Api
    handle: Handler
    #: The answer reporting an error, in the API's own shape (see `ErrorBody`).
    error: ErrorBody | None = None
    needs: Callable[[KafkaRequest], list[Need]] = _nothing
    items: Items | None = None
    #: Taken before a login (ApiVersions and the login itself).
    login: bool = False
    #: Begins the moment it is read, not once every earlier request is answered (a produce:
    #: appended in arrival order, its fsync wait shared with the produces behind it).
    at_once: bool = False
    #: The client wants no answer at all, not even an error (a produce with acks=0).
    quiet: Callable[[KafkaRequest], bool] = lambda request: False

    def error_body(self, body: Body, code: int, message: str | None = None) -> Body:
        if self.error is not None:
            return self.error(body, code, message)
        answer: Body = {"throttle_time_ms": 0}
        if any(field.name == "error_code" for field in self.api.response.fields):
            answer["error_code"] = code
        return answer


_ENDPOINTS = [
    Endpoint(API_VERSIONS, metadata.api_versions, login=True),
    Endpoint(SASL_HANDSHAKE, session.sasl_handshake, login=True),
    Endpoint(SASL_AUTHENTICATE, session.sasl_authenticate, session.sasl_authenticate_error, login=True),
    Endpoint(METADATA, metadata.metadata, metadata.metadata_error),
    Endpoint(
        PRODUCE, produce.produce, produce.produce_error, at_once=True, quiet=lambda r: r.body["acks"] == 0
    ),
    Endpoint(FETCH, fetch.fetch, fetch.fetch_error),
    Endpoint(LIST_OFFSETS, offsets.list_offsets, offsets.partitions_error, offsets.list_offsets_needs),
    Endpoint(FIND_COORDINATOR, metadata.find_coordinator, needs=metadata.find_coordinator_needs),
    Endpoint(INIT_PRODUCER_ID, metadata.init_producer_id),
    Endpoint(JOIN_GROUP, groups.join_group, needs=groups.group_needs),
    Endpoint(SYNC_GROUP, groups.sync_group, needs=groups.group_needs),
    Endpoint(HEARTBEAT, groups.heartbeat, needs=groups.group_needs),
    Endpoint(LEAVE_GROUP, groups.leave_group, needs=groups.group_needs),
    Endpoint(OFFSET_COMMIT, offsets.offset_commit, offsets.partitions_error, offsets.commit_needs),
    Endpoint(OFFSET_FETCH, offsets.offset_fetch, offsets.offset_fetch_error, offsets.fetch_offsets_needs),
    Endpoint(LIST_GROUPS, groups.list_groups),
    Endpoint(
        DESCRIBE_GROUPS,
        groups.describe_groups,
        groups.describe_groups_error,
        items=Items("groups", "groups", lambda name: ("describe", "group", name)),
    ),
    Endpoint(
        CREATE_TOPICS,
        admin.create_topics,
        admin.create_topics_error,
        items=Items("topics", "topics", lambda t: ("create", "topic", t["name"])),
    ),
    Endpoint(
        DELETE_TOPICS,
        admin.delete_topics,
        admin.delete_topics_error,
        items=Items("topic_names", "responses", lambda name: ("delete", "topic", name)),
    ),
    Endpoint(
        DESCRIBE_CONFIGS,
        admin.describe_configs,
        admin.describe_configs_error,
        items=Items("resources", "results", lambda r: admin.resource_need("describe", r)),
    ),
    Endpoint(
        ALTER_CONFIGS,
        admin.alter_configs,
        admin.configs_error,
        items=Items("resources", "responses", lambda r: admin.resource_need("alter", r)),
    ),
    Endpoint(
        INCREMENTAL_ALTER_CONFIGS,
        admin.incremental_alter_configs,
        admin.configs_error,
        items=Items("resources", "responses", lambda r: admin.resource_need("alter", r)),
    ),
]

#: The endpoints by API key.
ENDPOINTS: dict[int, Endpoint] = {endpoint.api.key: endpoint for endpoint in _ENDPOINTS}

"""Every request of the native protocol, declared once: its handler, what the ACLs must allow,
which topics it may create, and how it is admitted.

A handler answers at once (a response and its payload), or returns an awaitable that the
connection runs as a task of its own: a request that waits - for an fsync (a produce, a commit,
a join), for records (a fetch, a poll). A logged-in client's produce with acks=0 is never
answered, not even with an error (`quiet`). Errors become the request's own response type carrying the error's code and
message (`connection.error_response`): one shape for every request of this protocol.

A group member's requests may only come from the principal it joined as (`member`). A member
needs WRITE on its dead-letter topics (`dlq.<group>.<topic>`) to join: the broker copies poison
records there on its behalf, and must not become a way to write where the member may not
(Kafka's KIP-1191 reasoning). Resetting a group's offsets is an operator's act: ALTER on the
group. The lists (ListTopics, ListGroups, and the rows of DescribeGroup and ListGroupOffsets)
show only what the principal may describe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from logbroker.broker.names import dead_letter_topic
from logbroker.errors import LogbrokerError
from logbroker.protocol.messages import (
    AlterTopic,
    CommitOffset,
    CreateTopic,
    DeleteTopic,
    DescribeGroup,
    DescribeTopic,
    Fetch,
    GroupPoll,
    Heartbeat,
    Hello,
    JoinGroup,
    LeaveGroup,
    ListGroupOffsets,
    ListGroups,
    ListOffsets,
    ListTopics,
    Message,
    Nack,
    Produce,
    ResetOffsets,
    SaslAuthenticate,
    SaslHandshake,
)
from logbroker.server.connection import BaseConnection
from logbroker.server.native import groups, records, session, topics
from logbroker.server.security import Need

__all__ = ["ENDPOINTS", "Endpoint", "Reply"]

Reply = tuple[Message, bytes]
Handler = Callable[[BaseConnection, Any, bytes], Reply | Awaitable[Reply] | None]


def _nothing(request: Any) -> list[Any]:
    return []


@attrs.frozen
class Endpoint:
    handle: Handler
    #: (operation, resource type, name) the ACLs must allow before any work is done.
    needs: Callable[[Any], list[Need]] = _nothing
    #: Topics the request may create on first produce, when the broker creates topics (a
    #: producer's requests only: a consumer's never create one): the ACLs must then allow
    #: `create` on those missing; its handler creates them once it found the request valid.
    creates: Callable[[Any], list[str]] = _nothing
    #: Part of the login itself (Hello and SASL): taken before a login, not counted by quotas.
    login: bool = False
    #: Names a group member (`group`, `member_id`): only the principal it joined as may send it.
    member: bool = False
    #: The client wants no answer at all, not even an error (a produce with acks=0).
    quiet: Callable[[Any], bool] = lambda request: False


def _join_needs(request: JoinGroup) -> list[Need]:
    needs: list[Need] = [("read", "group", request.group)]
    for topic in dict.fromkeys(request.topics):
        needs.append(("read", "topic", topic))
        try:
            needs.append(("write", "topic", dead_letter_topic(request.group, topic)))
        except LogbrokerError:
            pass  # a name too long: the join itself refuses it
    return needs


def _offsets_needs(request: ListGroupOffsets) -> list[Need]:
    needs: list[Need] = []
    if request.group is not None:
        needs.append(("describe", "group", request.group))
    if request.topic is not None:
        needs.append(("describe", "topic", request.topic))
    return needs


def _group(request: Any) -> list[Need]:
    return [("read", "group", request.group)]


ENDPOINTS: dict[type[Message], Endpoint] = {
    Hello: Endpoint(session.hello, login=True),
    SaslHandshake: Endpoint(session.sasl_handshake, login=True),
    SaslAuthenticate: Endpoint(session.sasl_authenticate, login=True),
    CreateTopic: Endpoint(topics.create_topic, lambda r: [("create", "topic", r.name)]),
    AlterTopic: Endpoint(topics.alter_topic, lambda r: [("alter", "topic", r.name)]),
    DeleteTopic: Endpoint(topics.delete_topic, lambda r: [("delete", "topic", r.name)]),
    ListTopics: Endpoint(topics.list_topics),
    DescribeTopic: Endpoint(
        topics.describe_topic,
        lambda r: [("describe", "topic", r.name)],
        creates=lambda r: [r.name] if r.allow_auto_create else [],  # a producer looking its topic up
    ),
    ListOffsets: Endpoint(topics.list_offsets, lambda r: [("describe", "topic", r.topic)]),
    Produce: Endpoint(
        records.produce,
        lambda r: [("write", "topic", r.topic)],
        creates=lambda r: [r.topic],
        quiet=lambda r: r.acks == 0,
    ),
    Fetch: Endpoint(
        records.fetch,
        lambda r: [("read", "topic", t) for t in dict.fromkeys(p.topic for p in r.partitions)],
    ),
    JoinGroup: Endpoint(groups.join_group, _join_needs, member=True),
    LeaveGroup: Endpoint(groups.leave_group, _group, member=True),
    Heartbeat: Endpoint(groups.heartbeat, _group, member=True),
    GroupPoll: Endpoint(groups.poll, _group, member=True),
    CommitOffset: Endpoint(
        groups.commit_offset, lambda r: [("read", "group", r.group), ("read", "topic", r.topic)], member=True
    ),
    Nack: Endpoint(groups.nack, _group, member=True),
    ResetOffsets: Endpoint(
        groups.reset_offsets,
        lambda r: [("alter", "group", r.group), ("describe", "topic", r.topic)],
    ),
    ListGroups: Endpoint(groups.list_groups),
    DescribeGroup: Endpoint(groups.describe_group, lambda r: [("describe", "group", r.group)]),
    ListGroupOffsets: Endpoint(groups.list_group_offsets, _offsets_needs),
}

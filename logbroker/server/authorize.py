"""What each native request needs the ACLs to allow, and the filtering of list answers.

A request is checked as a whole before any work is done: a fetch of several partitions with one
the principal may not read is refused whole. Lists (topics, groups, offsets) show only what the
principal may describe. A group member needs WRITE on its dead-letter topics (`dlq.<group>.<topic>`)
to join: the broker copies poison records there on the member's behalf, and must not become a way
to write where the member itself may not (Kafka's KIP-1191 reasoning).
"""

from __future__ import annotations

import attrs

from logbroker.broker.broker import Broker
from logbroker.broker.names import dead_letter_topic
from logbroker.errors import LogbrokerError
from logbroker.protocol.messages import (
    AlterTopic,
    CommitOffset,
    CreateTopic,
    DeleteTopic,
    DescribeGroup,
    DescribeGroupResponse,
    DescribeTopic,
    Fetch,
    GroupPoll,
    Heartbeat,
    JoinGroup,
    LeaveGroup,
    ListGroupOffsets,
    ListGroupOffsetsResponse,
    ListGroupsResponse,
    ListOffsets,
    ListTopicsResponse,
    Message,
    Nack,
    Produce,
    ResetOffsets,
)
from logbroker.server.security import Need, Security

__all__ = ["filter_response", "needs_of"]


def needs_of(request: Message, broker: Broker) -> list[Need]:
    """The (operation, resource type, name) triples `request` needs; [] for lists (filtered
    afterwards) and session requests. A request that would auto-create a topic also needs
    create on it."""
    needs = _needs(request)
    if broker.options.auto_create_topics:
        for topic in _topics(request):
            if not broker.has_topic(topic):
                needs.append(("create", "topic", topic))
    return needs


def _needs(request: Message) -> list[Need]:
    if isinstance(request, Produce):
        return [("write", "topic", request.topic)]
    if isinstance(request, Fetch):
        return [("read", "topic", topic) for topic in _topics(request)]
    if isinstance(request, ListOffsets):
        return [("describe", "topic", request.topic)]
    if isinstance(request, DescribeTopic):
        return [("describe", "topic", request.name)]
    if isinstance(request, CreateTopic):
        return [("create", "topic", request.name)]
    if isinstance(request, DeleteTopic):
        return [("delete", "topic", request.name)]
    if isinstance(request, AlterTopic):
        return [("alter", "topic", request.name)]
    if isinstance(request, JoinGroup):
        needs: list[Need] = [("read", "group", request.group)]
        for topic in _topics(request):
            needs.append(("read", "topic", topic))
            try:
                needs.append(("write", "topic", dead_letter_topic(request.group, topic)))
            except LogbrokerError:
                pass  # a name too long: the join itself refuses it
        return needs
    if isinstance(request, LeaveGroup | Heartbeat | GroupPoll | Nack):
        return [("read", "group", request.group)]
    if isinstance(request, CommitOffset):
        return [("read", "group", request.group), ("read", "topic", request.topic)]
    if isinstance(request, ResetOffsets):
        # An operator's move of a group's offsets, not a member's commit: ALTER on the group.
        return [("alter", "group", request.group), ("describe", "topic", request.topic)]
    if isinstance(request, DescribeGroup):
        return [("describe", "group", request.group)]
    if isinstance(request, ListGroupOffsets):
        needs = []
        if request.group is not None:
            needs.append(("describe", "group", request.group))
        if request.topic is not None:
            needs.append(("describe", "topic", request.topic))
        return needs
    return []


def _topics(request: Message) -> list[str]:
    """The topics a request may auto-create (every one it names that the broker looks up)."""
    if isinstance(request, Produce | ListOffsets | ResetOffsets):
        return [request.topic]
    if isinstance(request, DescribeTopic):
        return [request.name] if request.allow_auto_create else []
    if isinstance(request, Fetch):
        return list(dict.fromkeys(p.topic for p in request.partitions))
    if isinstance(request, JoinGroup):
        return list(dict.fromkeys(request.topics))
    return []


def filter_response(response: Message, principal: str, security: Security) -> Message:
    """A list answer cut down to what the principal may describe."""
    if not security.authorize:
        return response
    may = security.may
    if isinstance(response, ListTopicsResponse):
        topics = [t for t in response.topics if may(principal, "describe", "topic", t.name)]
        return attrs.evolve(response, topics=topics)

    def topic_visible(topic: str) -> bool:
        return may(principal, "describe", "topic", topic)

    if isinstance(response, ListGroupsResponse):
        groups = [
            attrs.evolve(g, topics=[t for t in g.topics if topic_visible(t)])
            for g in response.groups
            if may(principal, "describe", "group", g.name)
        ]
        return attrs.evolve(response, groups=groups)
    if isinstance(response, DescribeGroupResponse):
        members = [
            attrs.evolve(
                m,
                topics=[t for t in m.topics if topic_visible(t)],
                assignment=[ref for ref in m.assignment if topic_visible(ref.topic)],
            )
            for m in response.members
        ]
        partitions = [row for row in response.partitions if topic_visible(row.topic)]
        return attrs.evolve(response, members=members, partitions=partitions)
    if isinstance(response, ListGroupOffsetsResponse):
        rows = [
            row
            for row in response.offsets
            if may(principal, "describe", "group", row.group)
            and may(principal, "describe", "topic", row.topic)
        ]
        return attrs.evolve(response, offsets=rows)
    return response

"""Consumer-group requests of the native protocol: membership, polls, acks and nacks, and the
admin views (groups of both kinds: Kafka clients' groups show here too)."""

from __future__ import annotations

from logbroker.broker.broker import TopicPartition
from logbroker.errors import InvalidRequestError, UnknownTopicOrPartitionError
from logbroker.groups.admin import GroupView, OffsetRow
from logbroker.protocol.messages import (
    CommitOffset,
    CommitOffsetResponse,
    DescribeGroup,
    DescribeGroupResponse,
    GroupMemberInfo,
    GroupOffsetInfo,
    GroupPoll,
    GroupPollResponse,
    GroupSummary,
    Heartbeat,
    HeartbeatResponse,
    JoinGroup,
    JoinGroupResponse,
    LeaveGroup,
    LeaveGroupResponse,
    ListGroupOffsets,
    ListGroupOffsetsResponse,
    ListGroups,
    ListGroupsResponse,
    Message,
    Nack,
    NackResponse,
    PolledPartition,
    ResetOffsets,
    ResetOffsetsResponse,
    TopicPartitionRef,
)
from logbroker.server.connection import BaseConnection

Reply = tuple[Message, bytes]


async def join_group(conn: BaseConnection, request: JoinGroup, payload: bytes) -> Reply:
    joined = await conn.engine.groups.join(
        request.group,
        request.member_id,
        request.client_id,
        request.topics,
        ack_timeout_ms=request.ack_timeout_ms,
        max_deliveries=request.max_deliveries,
        session_timeout_ms=request.session_timeout_ms,
        start=request.start,
    )
    if conn.principal is not None:  # later requests naming this member must come from it
        conn.security.joined(conn.principal, request.group, joined.member_id)
    return (
        JoinGroupResponse(
            member_id=joined.member_id,
            generation=joined.assignment.generation,
            assignment=_refs(joined.assignment.partitions),
            ack_timeout_ms=joined.settings.ack_timeout_ms,
            max_deliveries=joined.settings.max_deliveries,
            session_timeout_ms=joined.settings.session_timeout_ms,
        ),
        b"",
    )


async def leave_group(conn: BaseConnection, request: LeaveGroup, payload: bytes) -> Reply:
    await conn.engine.groups.leave(request.group, request.member_id)
    return LeaveGroupResponse(), b""


def heartbeat(conn: BaseConnection, request: Heartbeat, payload: bytes) -> Reply:
    assignment = conn.engine.groups.heartbeat(request.group, request.member_id)
    return HeartbeatResponse(generation=assignment.generation, assignment=_refs(assignment.partitions)), b""


async def poll(conn: BaseConnection, request: GroupPoll, payload: bytes) -> Reply:
    seen = None if request.seen is None else {(p.topic, p.partition): p.offset for p in request.seen}
    result = await conn.engine.groups.poll(
        request.group,
        request.member_id,
        max_bytes=min(max(request.max_bytes, 1), conn.config.max_fetch_bytes),
        max_wait_ms=request.max_wait_ms,
        seen=seen,
    )
    data = b"".join(d.data for d in result.delivered)
    conn.charge_fetch(len(data))
    parts = [
        PolledPartition(d.topic, d.partition, d.start, d.end, len(d.data), [list(c) for c in d.counts])
        for d in result.delivered
    ]
    return (
        GroupPollResponse(
            generation=result.generation, assignment=_refs(result.assignment), partitions=parts
        ),
        data,
    )


async def commit_offset(conn: BaseConnection, request: CommitOffset, payload: bytes) -> Reply:
    committed = await conn.engine.groups.commit(
        request.group, request.member_id, request.generation, request.topic, request.partition, request.offset
    )
    return CommitOffsetResponse(committed=committed), b""


def nack(conn: BaseConnection, request: Nack, payload: bytes) -> Reply:
    conn.engine.groups.nack(
        request.group,
        request.member_id,
        request.generation,
        request.topic,
        request.partition,
        request.offset,
        request.delay_ms,
        release=request.release,
    )
    return NackResponse(), b""


async def reset_offsets(conn: BaseConnection, request: ResetOffsets, payload: bytes) -> Reply:
    if request.to is None and request.timestamp is None:
        raise InvalidRequestError("reset offsets needs `to` or `timestamp`")
    result = await conn.engine.groups.reset_offsets(
        request.group,
        request.topic,
        request.to or "earliest",
        timestamp=request.timestamp,
        create=request.create,
        dry_run=request.dry_run,
    )
    return (
        ResetOffsetsResponse(
            partitions=[TopicPartitionRef(request.topic, p) for p, _, _ in result],
            offsets=[o for _, _, o in result],
            previous=[before for _, before, _ in result],
        ),
        b"",
    )


def list_groups(conn: BaseConnection, request: ListGroups, payload: bytes) -> Reply:
    summaries = [
        GroupSummary(
            view.name,
            len(view.members),
            view.generation,
            [t for t in view.topics if conn.may("describe", "topic", t)],
            "kafka" if view.kind == "classic" else "native",
        )
        for view in conn.engine.groups.views()
        if conn.may("describe", "group", view.name)
    ]
    return ListGroupsResponse(groups=summaries), b""


def describe_group(conn: BaseConnection, request: DescribeGroup, payload: bytes) -> Reply:
    view = conn.engine.groups.view(request.group)
    rows = conn.engine.groups.offset_rows(request.group)
    return _description(conn, view, rows), b""


def list_group_offsets(conn: BaseConnection, request: ListGroupOffsets, payload: bytes) -> Reply:
    if request.group is not None and conn.may("describe", "group", request.group):
        conn.engine.groups.view(request.group)  # an unknown group is an error, not an empty list
    if request.topic is not None and not conn.engine.topics.exists(request.topic):
        raise UnknownTopicOrPartitionError(f"unknown topic {request.topic!r}")  # a typo, likely
    rows = conn.engine.groups.offset_rows(request.group, request.topic)
    visible = [
        _offset_info(r)
        for r in rows
        if conn.may("describe", "group", r.group) and conn.may("describe", "topic", r.topic)
    ]
    return ListGroupOffsetsResponse(offsets=visible), b""


def _description(conn: BaseConnection, view: GroupView, rows: list[OffsetRow]) -> DescribeGroupResponse:
    def visible(topic: str) -> bool:
        return conn.may("describe", "topic", topic)

    settings = view.settings
    return DescribeGroupResponse(
        name=view.name,
        generation=view.generation,
        ack_timeout_ms=settings.ack_timeout_ms if settings else 0,
        max_deliveries=settings.max_deliveries if settings else 0,
        session_timeout_ms=view.session_timeout_ms,
        members=[
            GroupMemberInfo(
                m.member_id,
                m.client_id,
                [t for t in m.topics if visible(t)],
                [ref for ref in _refs(m.assignment) if visible(ref.topic)],
            )
            for m in (
                sorted(view.members, key=lambda m: m.member_id) if view.kind == "native" else view.members
            )
        ],
        partitions=[_offset_info(r) for r in rows if visible(r.topic)],
        protocol="kafka" if view.kind == "classic" else "native",
        state=view.state,
    )


def _refs(assignment: list[TopicPartition]) -> list[TopicPartitionRef]:
    return [TopicPartitionRef(t, p) for t, p in assignment]


def _offset_info(row: OffsetRow) -> GroupOffsetInfo:
    return GroupOffsetInfo(
        row.group,
        row.topic,
        row.partition,
        row.committed,
        row.cursor,
        row.in_flight,
        row.log_start,
        row.log_end,
        row.lag,
        row.owner,
    )

"""What admin tools see of groups, and what they may change: groups of both kinds as plain
values (`GroupView`, `OffsetRow`), their committed offsets, and the reset of a member-less
group's offsets.

Both front doors describe groups from these values (the native protocol's ListGroups and
DescribeGroup, Kafka's ListGroups, DescribeGroups and OffsetFetch), so a group looks the same
whichever protocol asks and whichever protocol its members speak.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs

from logbroker.broker.broker import Broker, Durable, TopicPartition
from logbroker.broker.names import check_group_name
from logbroker.broker.options import GroupSettings
from logbroker.errors import (
    GroupIdNotFoundError,
    InvalidRequestError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from logbroker.groups.classic import ClassicGroup, ClassicGroups, assigned_partitions, subscribed_topics
from logbroker.groups.cursor import PartitionCursor
from logbroker.groups.membership import Group, Membership, settings_value, start_offset
from logbroker.groups.offsets_store import Changes, OffsetsStore

__all__ = ["GroupAdmin", "GroupView", "MemberView", "OffsetRow"]


@attrs.frozen
class OffsetRow:
    group: str
    topic: str
    partition: int
    committed: int
    cursor: int
    log_start: int
    log_end: int
    lag: int
    in_flight: int
    owner: str | None


@attrs.frozen
class MemberView:
    member_id: str
    client_id: str
    #: Where a Kafka member connected from ("" for native members).
    client_host: str
    topics: list[str]
    assignment: list[TopicPartition]
    #: A Kafka member's subscription and assignment as its protocol encodes them (b"" native).
    metadata: bytes = b""
    assignment_bytes: bytes = b""


@attrs.frozen
class GroupView:
    name: str
    kind: Literal["native", "classic"]
    #: (`members` are in the order they joined.)
    #: Kafka's names: Empty, PreparingRebalance, CompletingRebalance, Stable (a native group
    #: is Stable while it has members).
    state: str
    generation: int
    members: list[MemberView]
    #: Every topic the group subscribes to or has committed offsets of.
    topics: list[str]
    #: The group's session timeout (a classic group's: the longest of its members').
    session_timeout_ms: int
    #: A native group's settings (None for a classic group).
    settings: GroupSettings | None = None
    #: A classic group's protocol type ("consumer") and assignor, as its members chose them.
    protocol_type: str = ""
    protocol: str = ""


class GroupAdmin:
    def __init__(
        self, broker: Broker, membership: Membership, classic: ClassicGroups, store: OffsetsStore
    ) -> None:
        self._broker = broker
        self._native = membership.groups
        self._defaults = membership.defaults
        self._classic = classic
        self._store = store

    # -- views ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._native.keys() | self._classic.groups.keys())

    def view(self, name: str) -> GroupView:
        classic = self._classic.groups.get(name)
        if classic is not None:
            return _classic_view(classic)
        native = self._native.get(name)
        if native is None:
            raise GroupIdNotFoundError(f"unknown group {name!r}")
        return _native_view(native)

    def views(self) -> list[GroupView]:
        return [self.view(name) for name in self.names()]

    def offset_rows(self, group_name: str | None = None, topic: str | None = None) -> Iterator[OffsetRow]:
        """A row per (group, topic, partition) with a committed offset, groups of both kinds."""
        for name in self.names():
            if group_name is not None and name != group_name:
                continue
            classic = self._classic.groups.get(name)
            if classic is not None:
                owners = {
                    tp: member.member_id
                    for member in classic.members.values()
                    for tp in assigned_partitions(member.assignment)
                }
                for (t, p), (committed, _) in sorted(classic.offsets.items()):
                    if topic is None or t == topic:
                        row = self._row(name, t, p, committed, committed, 0, owners.get((t, p)))
                        if row is not None:
                            yield row
                continue
            for (t, p), state in sorted(self._native[name].partitions.items()):
                if topic is None or t == topic:
                    row = self._row(
                        name, t, p, state.committed, state.cursor, state.in_flight_count, state.owner
                    )
                    if row is not None:
                        yield row

    def committed(
        self, name: str, wanted: list[TopicPartition] | None
    ) -> dict[TopicPartition, tuple[int, str | None]]:
        """Committed offsets (with their metadata) of a group of either kind; -1 for a wanted
        partition without one. `wanted` None: every partition with one."""
        committed: dict[TopicPartition, tuple[int, str | None]] = {}
        classic = self._classic.groups.get(name)
        native = self._native.get(name)
        if classic is not None:
            committed = dict(classic.offsets)
        elif native is not None:
            committed = {tp: (state.committed, None) for tp, state in native.partitions.items()}
        if wanted is None:
            return committed
        return {tp: committed.get(tp, (-1, None)) for tp in wanted}

    # -- changes -------------------------------------------------------------------------------

    def reset_offsets(
        self,
        group_name: str,
        topic: str,
        to: str | int,
        *,
        timestamp: int | None = None,
        create: bool = True,
        dry_run: bool = False,
        now_ms: int,
    ) -> tuple[list[tuple[int, int, int]], Durable | None]:
        """Move the group's committed offsets of `topic` to 'earliest', 'latest', an offset, or
        (with `timestamp`) the first record at or after that time; only while the group has no
        members. Returns (partition, committed before or -1, new offset) triples. The topic must
        exist. A group that does not exist yet is started at these offsets, unless `create` is
        False (then `GroupIdNotFoundError`). `dry_run` computes the moves and changes nothing."""
        check_group_name(group_name)
        classic = self._classic.groups.get(group_name)
        native = self._native.get(group_name)
        for existing in (classic, native):
            if existing is not None and existing.members:
                raise NonEmptyGroupError(
                    f"group {group_name!r} has {len(existing.members)} member(s); "
                    "offsets can only be reset while it has none"
                )
        if classic is None and native is None and not create:
            raise GroupIdNotFoundError(f"unknown group {group_name!r}")
        count = self._broker.partition_count(topic)
        before = {tp: offset for tp, (offset, _) in self.committed(group_name, None).items()}
        moves = [(p, before.get((topic, p), -1), self._target(topic, p, to, timestamp)) for p in range(count)]
        if dry_run:
            return moves, None
        if classic is not None:
            changes = self._classic.commit(classic, {(topic, p): (offset, None) for p, _, offset in moves})
            return moves, self._store.write(changes, now_ms)
        group = native or Group(group_name, self._defaults)
        self._native[group_name] = group
        changes = []
        if OffsetsStore.group_key(group_name) not in self._store.live:
            changes.append((OffsetsStore.group_key(group_name), settings_value(group)))
        for partition, _, offset in moves:
            group.partitions[(topic, partition)] = PartitionCursor(topic, partition, offset, offset)
            changes.append((OffsetsStore.offset_key(group_name, topic, partition), {"offset": offset}))
        return moves, self._store.write(changes, now_ms)

    def forget_topic(self, topic: str) -> Changes:
        """Drop every group's offsets of a deleted topic; returns the changes to write. Native
        groups that subscribe to it get a new assignment at their next timer run (as when a
        topic they subscribe to is created)."""
        changes: Changes = []
        for group in self._native.values():
            for tp in [tp for tp in group.partitions if tp[0] == topic]:
                del group.partitions[tp]
                changes.append((OffsetsStore.offset_key(group.name, *tp), None))
        for classic in self._classic.groups.values():
            for tp in [tp for tp in classic.offsets if tp[0] == topic]:
                del classic.offsets[tp]
                changes.append((OffsetsStore.offset_key(classic.name, *tp), None))
        return changes

    # -- internals -----------------------------------------------------------------------------

    def _target(self, topic: str, partition: int, to: str | int, timestamp: int | None) -> int:
        if timestamp is not None:
            return start_offset(self._broker, topic, partition, timestamp)
        if to in ("earliest", "latest"):
            return start_offset(self._broker, topic, partition, to)
        if isinstance(to, int) and not isinstance(to, bool):
            log = self._broker.log(topic, partition)
            return min(max(to, log.log_start_offset), self._broker.high_watermark(log))
        raise InvalidRequestError(f"reset to 'earliest', 'latest' or an offset, not {to!r}")

    def _row(
        self,
        group: str,
        topic: str,
        partition: int,
        committed: int,
        cursor: int,
        in_flight: int,
        owner: str | None,
    ) -> OffsetRow | None:
        """The row of a partition with a committed offset (None when the partition is gone)."""
        try:
            log = self._broker.log(topic, partition)
        except UnknownTopicOrPartitionError:
            return None
        end = self._broker.high_watermark(log)
        return OffsetRow(
            group,
            topic,
            partition,
            committed,
            cursor,
            log.log_start_offset,
            end,
            max(end - committed, 0),
            in_flight,
            owner,
        )


def _native_view(group: Group) -> GroupView:
    return GroupView(
        name=group.name,
        kind="native",
        state="Stable" if group.members else "Empty",
        generation=group.generation,
        members=[
            MemberView(m.member_id, m.client_id, "", list(m.topics), group.assignment(m.member_id))
            for m in group.members.values()
        ],
        topics=sorted({t for t, _ in group.partitions} | group.subscribed_topics()),
        session_timeout_ms=group.settings.session_timeout_ms,
        settings=group.settings,
    )


def _classic_view(group: ClassicGroup) -> GroupView:
    protocol = group.protocol_name or ""
    members = [
        MemberView(
            m.member_id,
            m.client_id,
            m.client_host,
            subscribed_topics(m.metadata(protocol)),
            assigned_partitions(m.assignment),
            m.metadata(protocol),
            m.assignment,
        )
        for m in group.members.values()
    ]
    topics = {t for t, _ in group.offsets}
    for member in members:
        topics.update(member.topics)
    return GroupView(
        name=group.name,
        kind="classic",
        state=group.state,
        generation=group.generation,
        members=members,
        topics=sorted(topics),
        protocol_type=group.protocol_type or "",
        protocol=protocol,
        session_timeout_ms=max((m.session_timeout_ms for m in group.members.values()), default=0),
    )

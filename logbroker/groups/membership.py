"""Native groups' membership: members, the assignment of partitions, and its generations.

A member joins with the topics it subscribes to and a session timeout; it stays while it sends
requests (a poll waiting in the broker counts). The partitions of the subscribed topics are
assigned among the members, sticky where possible and balanced (`assign`), and every change of
the assignment is a new generation: on joins, leaves, expired sessions, and topics created or
deleted. The first assignment of an empty group waits `group_initial_delay_ms`, so members that
start together share it. A partition that changes owner hands its in-flight records to the new
owner (`PartitionCursor.give_to`).

Plain state and synchronous operations: `now` is monotonic milliseconds (timeouts), `now_ms`
wall-clock milliseconds (timestamps); writes to `__offsets` are returned as `Durable` for the
caller to wait on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from logbroker.broker.broker import Broker, Durable, TopicPartition
from logbroker.broker.names import check_group_name, dead_letter_topic, is_internal
from logbroker.broker.options import GroupSettings
from logbroker.errors import GroupIdNotFoundError, InvalidRequestError, UnknownMemberIdError
from logbroker.groups.cursor import PartitionCursor
from logbroker.groups.offsets_store import Changes, OffsetsStore

__all__ = ["Group", "Member", "Membership", "assign", "start_offset"]


@attrs.define
class Member:
    member_id: str
    client_id: str
    topics: tuple[str, ...]
    last_seen: int
    #: A poll of this member is waiting in the broker (it is alive, whatever the clock says).
    polling: int = 0
    #: Counts the member's polls: only the latest may deliver (a newer poll ends older ones).
    latest_poll: int = 0


@attrs.define
class Group:
    name: str
    settings: GroupSettings
    generation: int = 0
    members: dict[str, Member] = attrs.Factory(dict)
    partitions: dict[TopicPartition, PartitionCursor] = attrs.Factory(dict)
    #: No assignment before this time: members that start together share the first generation.
    assign_after: int = 0
    #: Where partitions without a committed offset start ("earliest", "latest" or a timestamp).
    start: str | int = "earliest"
    #: The broker's `topics_version` at the last assignment (a topic created or deleted since
    #: may change what the group subscribes to).
    topics_version: int = -1

    def assignment(self, member_id: str) -> list[TopicPartition]:
        return sorted(tp for tp, state in self.partitions.items() if state.owner == member_id)

    def subscribed_topics(self) -> set[str]:
        return {topic for member in self.members.values() for topic in member.topics}


def assign(
    members: dict[str, Member],
    partitions: Iterable[TopicPartition],
    current: dict[TopicPartition, str | None],
) -> dict[TopicPartition, str | None]:
    """A sticky, balanced assignment: partitions keep their owner where it still subscribes to
    them and the balance allows; the rest go to the least-loaded subscriber.

    Each member ends with at most one partition more than any other member that could take it.
    """
    result: dict[TopicPartition, str | None] = {}
    load: dict[str, int] = dict.fromkeys(members, 0)
    wanted = sorted(partitions)
    subscribers: dict[str, list[str]] = {}
    for member_id, member in sorted(members.items()):
        for topic in member.topics:
            subscribers.setdefault(topic, []).append(member_id)
    by_topic: dict[str, int] = {}
    for topic, _ in wanted:
        by_topic[topic] = by_topic.get(topic, 0) + 1
    # The most any member should hold: partitions over members, rounded up, across its topics.
    quota = {
        member_id: -(
            -sum(by_topic.get(t, 0) for t in member.topics) // max(1, _sharers(members, member.topics))
        )
        for member_id, member in members.items()
    }
    # First pass: keep current owners (sticky) up to their quota.
    for tp in wanted:
        owner = current.get(tp)
        if owner in members and tp[0] in members[owner].topics and load[owner] < quota[owner]:
            result[tp] = owner
            load[owner] += 1
    # Second pass: give the rest to the least-loaded subscriber.
    for tp in wanted:
        if tp in result:
            continue
        candidates = subscribers.get(tp[0], [])
        if not candidates:
            result[tp] = None
            continue
        owner = min(candidates, key=lambda m: (load[m], m))
        result[tp] = owner
        load[owner] += 1
    # Third pass: the quotas round up, so kept partitions can leave a member two or more behind
    # (4 partitions kept 2 and 2, a third member with none): move partitions from the most
    # loaded to the least loaded subscriber until no move narrows the gap. Each move lowers the
    # sum of squared loads, so this ends.
    moved = True
    while moved:
        moved = False
        for tp in reversed(wanted):
            owner = result[tp]
            if owner is None:
                continue
            target = min(subscribers[tp[0]], key=lambda m: (load[m], m))
            if load[owner] - load[target] > 1:
                result[tp] = target
                load[owner] -= 1
                load[target] += 1
                moved = True
    return result


def _sharers(members: dict[str, Member], topics: tuple[str, ...]) -> int:
    """How many members subscribe to any of `topics`."""
    wanted = set(topics)
    return sum(1 for member in members.values() if wanted.intersection(member.topics))


def start_offset(broker: Broker, topic: str, partition: int, where: str | int) -> int:
    """Where a partition with no committed offset starts: 'earliest', 'latest', or the first
    offset at or after a timestamp (ms), the high watermark when no record is that new."""
    log = broker.log(topic, partition)
    if where == "earliest":
        return log.log_start_offset
    end = broker.high_watermark(log)
    if where == "latest":
        return end
    found = broker.list_offset(topic, partition, where)
    return end if found is None else found


class Membership:
    """Joins, leaves, heartbeats and session expiry of native groups, and their assignments."""

    def __init__(
        self,
        broker: Broker,
        groups: dict[str, Group],
        store: OffsetsStore,
        *,
        claim: Callable[[str], None],
    ) -> None:
        self._broker = broker
        #: Native groups by name (shared with the coordinator, which loads them).
        self.groups = groups
        self._store = store
        #: Makes a name free for a native group (a classic group of that name without members
        #: becomes native, keeping its offsets; one with members refuses).
        self._claim = claim
        self.defaults = broker.options.group_defaults
        self.initial_delay_ms = broker.options.group_initial_delay_ms

    def join(
        self,
        group_name: str,
        member_id: str | None,
        client_id: str,
        topics: list[str],
        *,
        ack_timeout_ms: int | None = None,
        max_deliveries: int | None = None,
        session_timeout_ms: int | None = None,
        start: str | int | None = None,
        now: int,
        now_ms: int,
    ) -> tuple[str, Group, Durable | None]:
        """Add (or update) a member; returns its id, the group, and what must become durable.
        The topics must exist: a consumer never creates one."""
        check_group_name(group_name)
        if not topics:
            raise InvalidRequestError("a member subscribes to at least one topic")
        self._claim(group_name)
        for topic in topics:
            self._broker.partition_count(topic)  # it exists
            if is_internal(topic):
                raise InvalidRequestError(f"{topic!r} is internal and cannot be consumed by a group")
            dead_letter_topic(group_name, topic)
        group = self.groups.get(group_name)
        created = group is None
        if group is None:
            group = self.groups[group_name] = Group(group_name, self.defaults)
        settings = group.settings.with_overrides(ack_timeout_ms, max_deliveries, session_timeout_ms)
        changes: Changes = []
        if created:
            group.start = start if start is not None else "earliest"
        if created or settings != group.settings:
            group.settings = settings
            changes.append((OffsetsStore.group_key(group_name), settings_value(group)))
        member = group.members.get(member_id) if member_id else None
        if member is None:
            if not group.members:
                group.assign_after = now + self.initial_delay_ms
            member = Member(
                f"{client_id or 'member'}-{uuid.uuid4().hex[:12]}", client_id, tuple(sorted(set(topics))), now
            )
            group.members[member.member_id] = member
            changed = True
        else:
            member.last_seen = now
            changed = member.topics != tuple(sorted(set(topics)))
            member.topics = tuple(sorted(set(topics)))
        if changed and now >= group.assign_after:
            changes.extend(self.rebalance(group, now_ms))
        return member.member_id, group, self._store.write(changes, now_ms)

    def leave(self, group_name: str, member_id: str, *, now: int, now_ms: int) -> Durable | None:
        group = self.group(group_name)
        if group.members.pop(member_id, None) is None:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_name!r}")
        if now >= group.assign_after:
            return self._store.write(self.rebalance(group, now_ms), now_ms)
        return None

    def heartbeat(self, group_name: str, member_id: str, *, now: int) -> Group:
        group, _ = self.member(group_name, member_id, now)
        return group

    def group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise GroupIdNotFoundError(f"unknown group {name!r}")
        return group

    def member(self, group_name: str, member_id: str, now: int) -> tuple[Group, Member]:
        """The group and the member, which is alive as of `now`."""
        group = self.groups.get(group_name)
        member = group.members.get(member_id) if group else None
        if group is None or member is None:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {group_name!r} (its session expired or it left): join again"
            )
        member.last_seen = now
        return group, member

    def expire(self, now: int, now_ms: int) -> tuple[set[str], Changes]:
        """Remove members silent past their session timeout and make the assignments that are
        due (the first one after its delay, and after a topic was created or deleted). Returns
        the groups that changed and the `__offsets` changes to write."""
        changed: set[str] = set()
        changes: Changes = []
        for group in self.groups.values():
            expired = [
                m.member_id
                for m in group.members.values()
                if not m.polling and now - m.last_seen > group.settings.session_timeout_ms
            ]
            for member_id in expired:
                del group.members[member_id]
            if expired or (group.assign_after and now >= group.assign_after and group.members):
                group.assign_after = 0
                changes.extend(self.rebalance(group, now_ms))
                changed.add(group.name)
            elif group.members and not group.assign_after and self._topics_changed(group):
                changes.extend(self.rebalance(group, now_ms))
                changed.add(group.name)
        return changed, changes

    def next_deadline(self) -> int | None:
        """When `expire` next has something to do (monotonic ms), or None."""
        times: list[int] = []
        for group in self.groups.values():
            if group.assign_after and group.members:
                times.append(group.assign_after)
            times.extend(
                m.last_seen + group.settings.session_timeout_ms + 1
                for m in group.members.values()
                if not m.polling
            )
        return min(times) if times else None

    def rebalance(self, group: Group, now_ms: int) -> Changes:
        """A new generation: assign the subscribed partitions among the members (sticky).
        Returns the start offsets of partitions the group had none for, to write."""
        changes: Changes = []
        group.topics_version = self._broker.topics_version
        wanted = self._subscribed_partitions(group)
        current = {tp: state.owner for tp, state in group.partitions.items()}
        owners = assign(group.members, wanted, current)
        for tp, owner in owners.items():
            state = group.partitions.get(tp)
            if state is None:
                start = start_offset(self._broker, tp[0], tp[1], group.start)
                state = group.partitions[tp] = PartitionCursor(tp[0], tp[1], start, start)
                changes.append((OffsetsStore.offset_key(group.name, *tp), {"offset": start}))
            if state.owner != owner:
                state.give_to(owner)
        for tp, state in group.partitions.items():
            if tp not in owners and state.owner is not None:
                state.give_to(None)
        group.generation += 1
        return changes

    def _subscribed_partitions(self, group: Group) -> list[TopicPartition]:
        wanted: list[TopicPartition] = []
        for topic in sorted(group.subscribed_topics()):
            if self._broker.has_topic(topic):
                wanted.extend((topic, p) for p in range(self._broker.partition_count(topic)))
        return wanted

    def _topics_changed(self, group: Group) -> bool:
        """Whether a topic was created or deleted since the last assignment so that the
        partitions the group subscribes to are not the ones it assigned."""
        if group.topics_version == self._broker.topics_version:
            return False
        group.topics_version = self._broker.topics_version
        owned = {tp for tp, state in group.partitions.items() if state.owner is not None}
        return set(self._subscribed_partitions(group)) != owned


def settings_value(group: Group) -> dict[str, Any]:
    """A native group's settings as `__offsets` keeps them."""
    return {
        "ack_timeout_ms": group.settings.ack_timeout_ms,
        "max_deliveries": group.settings.max_deliveries,
        "session_timeout_ms": group.settings.session_timeout_ms,
        "start": group.start,
    }


def settings_from(value: dict[str, Any], defaults: GroupSettings) -> GroupSettings:
    """The settings `__offsets` kept (the defaults where they do not read)."""
    try:
        return defaults.with_overrides(
            int(value["ack_timeout_ms"]), int(value["max_deliveries"]), int(value["session_timeout_ms"])
        )
    except (KeyError, TypeError, ValueError, LookupError):
        return defaults

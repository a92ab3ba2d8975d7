"""Kafka's classic consumer groups, as Kafka clients expect them (JoinGroup / SyncGroup).

The broker coordinates; the members' leader assigns partitions (client side) and the broker only
passes assignments along. Group states, as Kafka names them:

    Empty --join--> PreparingRebalance --all rejoined, or rebalance timeout--> CompletingRebalance
      ^                   ^                                                         |
      |                   +--- join / leave / session expiry / leader rejoin -------+
      |                   |                                                         v
      +--- last member leaves or expires ------------------------------- Stable <--leader's SyncGroup

- A rebalance waits until every known member has sent JoinGroup again, or until the largest
  rebalance timeout of the members passes (members that did not rejoin are removed). A group
  that was empty first waits `initial_delay_ms` (Kafka's group.initial.rebalance.delay.ms), so
  consumers that start together share one generation.
- On completion the generation goes up, the protocol (assignor) is the one most members prefer
  among those all support, the leader stays if still a member (else the first to join), and
  every waiting JoinGroup is answered; only the leader's answer lists the members.
- SyncGroup from the leader carries every member's assignment; followers wait for it.
- A member is alive while it sends requests; a JoinGroup or SyncGroup waiting in the broker keeps
  it alive. One silent past its session timeout is removed and the group rebalances.

Committed offsets live in `__offsets` beside those of native groups (same keys); a group name
is one kind or the other. A group of either kind with no members can be taken over by the other
kind, keeping its committed offsets.

Synchronous and clock-free like the rest of the core: `now` is monotonic milliseconds. What waits
(a JoinGroup for the rebalance, a SyncGroup for the leader) is for the server to do: the results
are left on the member (`join_response`) or the group (`state`, assignments).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from logbroker.broker.broker import Broker, Durable, TopicPartition
from logbroker.errors import (
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    LogbrokerError,
    OffsetMetadataTooLargeError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logbroker.groups.offsets_store import Changes, OffsetsStore
from logbroker.kafka.apis import CONSUMER_ASSIGNMENT, CONSUMER_SUBSCRIPTION
from logbroker.kafka.schema import Struct
from logbroker.kafka.types import KafkaDecodeError, Reader

__all__ = [
    "ClassicGroup",
    "ClassicGroups",
    "ClassicMember",
    "JoinResponse",
    "assigned_partitions",
    "subscribed_topics",
]

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"

#: Kafka's offset.metadata.max.bytes.
MAX_METADATA_BYTES = 4096


@attrs.frozen
class JoinRequest:
    """A JoinGroup: who joins (`member_id` empty for a new member), how long its session and a
    rebalance may last, and the protocols (assignors) it offers, most preferred first."""

    group: str
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    #: (name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]


@attrs.frozen
class JoinResponse:
    error_code: int
    generation_id: int
    protocol_name: str
    leader: str
    member_id: str
    members: list[tuple[str, bytes]]


@attrs.define
class ClassicMember:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    #: (name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    last_seen: int
    #: A JoinGroup of this member waits for the rebalance to complete.
    joining: bool = False
    #: Its JoinGroup's answer, once the rebalance completed (taken by the waiting request).
    join_response: JoinResponse | None = None
    #: Requests of this member waiting in the broker (a JoinGroup, a SyncGroup): it is alive.
    waiting: int = 0
    assignment: bytes = b""

    def metadata(self, protocol: str) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")


@attrs.define
class ClassicGroup:
    name: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, ClassicMember] = attrs.Factory(dict)
    #: Committed offsets: (offset, metadata).
    offsets: dict[TopicPartition, tuple[int, str | None]] = attrs.Factory(dict)
    #: PreparingRebalance ends by this time even if members did not rejoin.
    rebalance_deadline: int = 0
    #: A rebalance of a group that was empty does not complete before this time.
    initial_delay_until: int = 0

    def all_joined(self) -> bool:
        return all(m.joining for m in self.members.values())


#: The `type` of a classic group's settings record in `__offsets` (native groups have none).
CLASSIC = "classic"


class ClassicGroups:
    """Every classic group: membership, rebalances, and committed offsets."""

    def __init__(
        self,
        broker: Broker,
        store: OffsetsStore,
        *,
        claim: Callable[[str], dict[TopicPartition, tuple[int, str | None]]] = lambda _: {},
        known: Callable[[str], bool] = lambda _: False,
    ) -> None:
        self._broker = broker
        self._store = store
        #: Makes a name free for a classic group: a native group of that name without members
        #: becomes classic (its committed offsets are returned); one with members refuses.
        self._claim = claim
        #: Whether a native group has the name.
        self._known = known
        self.initial_delay_ms = broker.options.classic_initial_delay_ms
        self.groups: dict[str, ClassicGroup] = {}

    # -- loading -------------------------------------------------------------------------------

    def load(
        self, name: str, offsets: dict[TopicPartition, tuple[int, str | None]] | None = None
    ) -> ClassicGroup:
        """A group without members (found in `__offsets` at start, or taken over)."""
        group = self.groups[name] = ClassicGroup(name, offsets=dict(offsets or {}))
        return group

    def group(self, name: str, *, now_ms: int) -> ClassicGroup:
        """The classic group `name`, created on demand (taking over a native group of that name
        that has no members, with its committed offsets)."""
        if not name:
            raise InvalidGroupIdError("a group id must not be empty")
        group = self.groups.get(name)
        if group is None:
            group = self.load(name, self._claim(name))
            self._store.write([(OffsetsStore.group_key(name), {"type": CLASSIC})], now_ms)
        return group

    def existing(self, name: str) -> ClassicGroup:
        """The classic group `name`, which a member's request (SyncGroup, Heartbeat, LeaveGroup)
        says exists."""
        group = self.groups.get(name)
        if group is None:
            raise UnknownMemberIdError(f"group {name!r} has no Kafka members")
        return group

    # -- membership ----------------------------------------------------------------------------

    def join(
        self, group: ClassicGroup, request: JoinRequest, *, now: int
    ) -> tuple[ClassicMember, JoinResponse | None]:
        """Add or refresh a member. Returns the member and its answer if there is one now; None
        means the answer comes when the rebalance completes (`member.join_response`). Errors are
        answered as responses with their code (the caller checks the group name and timeouts)."""
        member_id, client_id, client_host = request.member_id, request.client_id, request.client_host
        session_timeout_ms, rebalance_timeout_ms = request.session_timeout_ms, request.rebalance_timeout_ms
        protocol_type, protocols = request.protocol_type, request.protocols
        if not protocol_type or not protocols:
            raise InconsistentGroupProtocolError(
                f"a member of group {group.name!r} must name a protocol type and offer at least one "
                f"protocol (assignor); this one offers {protocol_type!r} with {len(protocols)}"
            )
        if group.members and (
            protocol_type != group.protocol_type or not self._common_protocols(group, protocols, member_id)
        ):
            raise InconsistentGroupProtocolError(
                f"group {group.name!r} uses protocol type {group.protocol_type!r} and assignors "
                f"{sorted(self._common_protocols(group, None, None))}; this member offers "
                f"{protocol_type!r} with {[name for name, _ in protocols]}"
            )
        if rebalance_timeout_ms < 0:
            rebalance_timeout_ms = session_timeout_ms  # JoinGroup v0 has none
        if not member_id:
            member = ClassicMember(
                f"{client_id or 'consumer'}-{uuid.uuid4()}",
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                protocol_type,
                list(protocols),
                now,
            )
            group.members[member.member_id] = member
            group.protocol_type = protocol_type
            member.joining = True
            self._prepare_rebalance(group, now)
            self._maybe_complete(group, now)
            return member, None
        existing = group.members.get(member_id)
        if existing is None:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {group.name!r}: join as a new member"
            )
        member = existing
        changed = member.protocols != list(protocols)
        member.protocols = list(protocols)
        member.session_timeout_ms = session_timeout_ms
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.last_seen = now
        member.join_response = None
        if group.state == PREPARING:
            member.joining = True
            self._maybe_complete(group, now)
            return member, None
        if group.state in (COMPLETING, STABLE) and not changed and member_id != group.leader:
            return member, self._join_response(group, member)  # nothing to rebalance for
        member.joining = True
        self._prepare_rebalance(group, now)
        self._maybe_complete(group, now)
        return member, None

    def sync(
        self,
        group: ClassicGroup,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes],
        *,
        now: int,
    ) -> bytes | None:
        """The member's assignment, or None while the leader has not sent the assignments."""
        member = self._member(group, member_id, generation, now)
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group {group.name!r} is rebalancing: join again")
        if group.state == STABLE:
            return member.assignment
        if member_id == group.leader:
            for m in group.members.values():
                m.assignment = assignments.get(m.member_id, b"")
            group.state = STABLE
            return member.assignment
        return None

    def heartbeat(self, group: ClassicGroup, member_id: str, generation: int, *, now: int) -> None:
        self._member(group, member_id, generation, now)
        if group.state == PREPARING:
            raise RebalanceInProgressError(f"group {group.name!r} is rebalancing: join again")

    def leave(self, group: ClassicGroup, member_id: str, *, now: int) -> None:
        if group.members.pop(member_id, None) is None:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group.name!r}")
        self._membership_changed(group, now)

    def expire(self, now: int) -> set[str]:
        """Remove members silent past their session timeout and complete rebalances that are
        due; returns the names of the groups that changed."""
        changed: set[str] = set()
        for group in self.groups.values():
            silent = [
                m.member_id
                for m in group.members.values()
                if not m.waiting and now - m.last_seen > m.session_timeout_ms
            ]
            for member_id in silent:
                del group.members[member_id]
            if silent:
                self._membership_changed(group, now)
                changed.add(group.name)
            if group.state == PREPARING and self._maybe_complete(group, now):
                changed.add(group.name)
        return changed

    def next_deadline(self) -> int | None:
        times: list[int] = []
        for group in self.groups.values():
            times.extend(
                m.last_seen + m.session_timeout_ms + 1 for m in group.members.values() if not m.waiting
            )
            if group.state == PREPARING:
                times.append(group.rebalance_deadline)
                if group.all_joined():
                    times.append(group.initial_delay_until)
        return min(times) if times else None

    # -- offsets -------------------------------------------------------------------------------

    def check_commit(self, group: ClassicGroup, member_id: str, generation: int, *, now: int) -> None:
        """Kafka's rules for an OffsetCommit, in Kafka's order: a simple commit (generation
        below 0) while the group has no members; not while the group waits for the leader's
        assignment; otherwise from a member of the current generation."""
        if generation < 0 and not group.members:
            return  # the group only uses the broker to store its offsets
        if group.state == COMPLETING:
            raise RebalanceInProgressError(f"group {group.name!r} is completing a rebalance: commit after it")
        self._member(group, member_id, generation, now)

    def commit_offsets(
        self,
        name: str,
        generation: int,
        member_id: str,
        offsets: dict[TopicPartition, tuple[int, str | None]],
        *,
        now: int,
        now_ms: int,
    ) -> tuple[dict[TopicPartition, int], Durable | None]:
        """An OffsetCommit: error codes per partition (0: committed) and what to await."""
        if generation >= 0 and name not in self.groups and not self._known(name):
            # Kafka: a commit with a generation is from a member of a group that is gone.
            raise IllegalGenerationError(f"group {name!r} does not exist: no generation {generation}")
        group = self.group(name, now_ms=now_ms)
        self.check_commit(group, member_id, generation, now=now)
        codes: dict[TopicPartition, int] = {}
        valid: dict[TopicPartition, tuple[int, str | None]] = {}
        for tp, (offset, metadata) in offsets.items():
            try:
                if not self._broker.has_topic(tp[0]) or not 0 <= tp[1] < self._broker.partition_count(tp[0]):
                    raise UnknownTopicOrPartitionError(f"{tp[0]} has no partition {tp[1]}")
                if metadata is not None and len(metadata.encode()) > MAX_METADATA_BYTES:
                    raise OffsetMetadataTooLargeError(f"commit metadata over {MAX_METADATA_BYTES} bytes")
            except LogbrokerError as exc:
                codes[tp] = exc.code
                continue
            codes[tp] = 0
            valid[tp] = (offset, metadata)
        return codes, self._store.write(self.commit(group, valid), now_ms)

    def commit(
        self, group: ClassicGroup, offsets: Mapping[TopicPartition, tuple[int, str | None]]
    ) -> Changes:
        """Record committed offsets; returns the `__offsets` changes to write."""
        changes: Changes = []
        for tp, (offset, metadata) in offsets.items():
            group.offsets[tp] = (offset, metadata)
            value: dict[str, Any] = {"offset": offset}
            if metadata:
                value["metadata"] = metadata
            changes.append((OffsetsStore.offset_key(group.name, *tp), value))
        return changes

    def assignments(self, group: ClassicGroup) -> Iterator[tuple[str, bytes]]:
        for member in group.members.values():
            yield member.member_id, member.assignment

    # -- internals -----------------------------------------------------------------------------

    def _member(self, group: ClassicGroup, member_id: str, generation: int, now: int) -> ClassicMember:
        member = group.members.get(member_id)
        if member is None:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group.name!r}")
        member.last_seen = now
        if generation != group.generation:
            raise IllegalGenerationError(
                f"generation {generation} of group {group.name!r} is over (now {group.generation})"
            )
        return member

    def _common_protocols(
        self, group: ClassicGroup, protocols: list[tuple[str, bytes]] | None, member_id: str | None
    ) -> set[str]:
        names: set[str] | None = None
        for member in group.members.values():
            if member.member_id == member_id:
                continue
            mine = {name for name, _ in member.protocols}
            names = mine if names is None else names & mine
        if protocols is not None:
            offered = {name for name, _ in protocols}
            names = offered if names is None else names & offered
        return names or set()

    def _prepare_rebalance(self, group: ClassicGroup, now: int) -> None:
        if group.state == PREPARING:
            return
        if group.state == EMPTY:
            group.initial_delay_until = now + self.initial_delay_ms
        else:
            group.initial_delay_until = now
        group.state = PREPARING
        group.rebalance_deadline = now + max(
            (m.rebalance_timeout_ms for m in group.members.values()), default=0
        )

    def _membership_changed(self, group: ClassicGroup, now: int) -> None:
        if not group.members:
            group.state = EMPTY
            group.leader = None
            group.protocol_name = None
            group.protocol_type = None
            return
        if group.state in (STABLE, COMPLETING):
            self._prepare_rebalance(group, now)
        self._maybe_complete(group, now)

    def _maybe_complete(self, group: ClassicGroup, now: int) -> bool:
        """Complete the rebalance if every member rejoined (after the initial delay), or its
        deadline passed (dropping members that did not rejoin)."""
        if group.state != PREPARING:
            return False
        if group.all_joined() and group.members:
            if now < group.initial_delay_until:
                return False
        elif now < group.rebalance_deadline:
            return False
        for member_id in [m.member_id for m in group.members.values() if not m.joining]:
            del group.members[member_id]
        if not group.members:
            group.state = EMPTY
            group.leader = None
            return True
        group.generation += 1
        group.protocol_name = self._choose_protocol(group)
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        for member in group.members.values():
            member.assignment = b""
            member.joining = False
            member.join_response = self._join_response(group, member)
        return True

    def _choose_protocol(self, group: ClassicGroup) -> str:
        """Each member votes for its most preferred protocol that all members support."""
        candidates = self._common_protocols(group, None, None)
        votes: dict[str, int] = {}
        for member in group.members.values():
            choice = next(name for name, _ in member.protocols if name in candidates)
            votes[choice] = votes.get(choice, 0) + 1
        return max(sorted(votes), key=lambda name: votes[name])

    def _join_response(self, group: ClassicGroup, member: ClassicMember) -> JoinResponse:
        protocol = group.protocol_name or ""
        members = (
            [(m.member_id, m.metadata(protocol)) for m in group.members.values()]
            if member.member_id == group.leader
            else []
        )
        return JoinResponse(0, group.generation, protocol, group.leader or "", member.member_id, members)


# The consumer protocol's payloads are opaque to the broker; it reads them only to show who owns
# what (`groups describe`, `offsets`), with the schemas of `logbroker.kafka.apis`. Both start
# with an int16 version. Only the leading field is read (the topics of a subscription, the
# partitions of an assignment), as before: it is the same in every version, and a client that
# leaves out or mangles what follows still shows what it owns.
_SUBSCRIBED = Struct(*CONSUMER_SUBSCRIPTION.fields[:1])
_ASSIGNED = Struct(*CONSUMER_ASSIGNMENT.fields[:1])


def _leading(struct: Struct, data: bytes) -> dict[str, Any] | None:
    try:
        reader = Reader(data)
        if reader.int16() < 0:
            return None
        return struct.decode(reader, 0, False)
    except KafkaDecodeError:
        return None


def assigned_partitions(assignment: bytes) -> list[TopicPartition]:
    """The partitions a ConsumerProtocolAssignment names ([] if it does not parse)."""
    decoded = _leading(_ASSIGNED, assignment)
    if decoded is None:
        return []
    return [(t["topic"], p) for t in decoded["assigned_partitions"] for p in t["partitions"]]


def subscribed_topics(metadata: bytes) -> list[str]:
    """The topics a ConsumerProtocolSubscription names ([] if it does not parse)."""
    decoded = _leading(_SUBSCRIBED, metadata)
    return [] if decoded is None else list(decoded["topics"])

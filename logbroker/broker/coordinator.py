"""`GroupCoordinator`: consumer groups over the broker's logs.

Fan-out is several groups reading one topic (each has its own committed offsets and cursors);
direct delivery is one group whose members share the partitions. The coordinator keeps every
group's state (see `group_state`), persists committed offsets and group settings in `__offsets`,
and serves polls by reading whole batches from the partition logs, as a fetch does: it never
decodes records on the delivery path. The only records it decodes are those it dead-letters.

Like the rest of the broker core it is synchronous and reads no clock: `now` is monotonic
milliseconds (timeouts), `now_ms` wall-clock milliseconds (record timestamps). What must wait -
a long poll, an fsync before acking a commit - is for the server to do; the methods that append
to a log return it with the offset it must be durable up to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from logbroker.broker.classic_groups import (
    MAX_METADATA_BYTES,
    ClassicGroup,
    ClassicGroups,
    assigned_partitions,
)
from logbroker.broker.group_state import Group, GroupSettings, Member, PartitionCursor, TopicPartition, assign
from logbroker.broker.names import check_group_name, dead_letter_topic, is_internal
from logbroker.broker.offsets_store import OFFSETS_TOPIC, Key, OffsetsStore
from logbroker.errors import (
    CorruptRecordError,
    GroupIdNotFoundError,
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidRequestError,
    LogbrokerError,
    NonEmptyGroupError,
    OffsetMetadataTooLargeError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logbroker.records import iter_records
from logbroker.records.codec import decode_batch, encode_batch
from logbroker.records.partitioner import partition_for_key
from logbroker.storage.log import PartitionLog

if TYPE_CHECKING:
    from logbroker.broker.broker import Broker

__all__ = ["DeadLetter", "Delivered", "Durable", "GroupCoordinator", "OffsetRow", "PollResult"]

#: The `type` of a classic group's settings record in `__offsets` (native groups have none).
CLASSIC = "classic"
OFFSETS_TOPIC_CONFIG = {"retention.ms": "-1", "segment.bytes": str(16 << 20)}


@attrs.frozen
class Durable:
    """An append the caller must see made durable (under `fsync=always`) before it acks."""

    log: PartitionLog
    next_offset: int


@attrs.frozen
class Delivered:
    """Records [start, end) of a partition, inside `data` (whole batches, which may hold
    records outside the range: skip them), with their delivery counts as (start, end, count)."""

    topic: str
    partition: int
    start: int
    end: int
    data: bytes
    counts: list[tuple[int, int, int]]


@attrs.frozen
class DeadLetter:
    """A record copied to its dead-letter topic; once the copy is durable, `finish_dead_letter`."""

    group: str
    topic: str
    partition: int
    offset: int
    copy: Durable


@attrs.frozen
class PollResult:
    generation: int
    assignment: list[TopicPartition]
    delivered: list[Delivered]
    dead_letters: list[DeadLetter]


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


class GroupCoordinator:
    def __init__(
        self,
        broker: Broker,
        *,
        defaults: GroupSettings | None = None,
        initial_delay_ms: int = 300,
        classic_initial_delay_ms: int = 3000,
        now_ms: int,
    ) -> None:
        self.broker = broker
        self.defaults = defaults or GroupSettings()
        self.initial_delay_ms = initial_delay_ms
        if not broker.has_topic(OFFSETS_TOPIC):
            broker.create_topic(OFFSETS_TOPIC, 1, OFFSETS_TOPIC_CONFIG, now_ms=now_ms, internal_ok=True)
        self.store = OffsetsStore(broker.log(OFFSETS_TOPIC, 0), now_ms=now_ms)
        #: Native groups, by name.
        self.groups: dict[str, Group] = {}
        #: Kafka's classic groups (JoinGroup/SyncGroup), by name: a name is one kind or the other.
        self.classic = ClassicGroups(self.store, initial_delay_ms=classic_initial_delay_ms)
        for name, value in self.store.groups():
            if value.get("type") == CLASSIC:
                self.classic.load(name)
            else:
                self.groups[name] = Group(
                    name, self._settings_from(value), start=value.get("start", "earliest")
                )
        finished: list[tuple[Key, dict[str, Any] | None]] = []
        for group_name, topic, partition, committed, marker in list(self.store.offsets()):
            classic = self.classic.groups.get(group_name)
            if classic is not None:
                metadata = self.store.live[OffsetsStore.offset_key(group_name, topic, partition)].get(
                    "metadata"
                )
                classic.offsets[(topic, partition)] = (committed, metadata)
                continue
            if marker is not None and self._was_dead_lettered(
                group_name, topic, partition, committed, marker
            ):
                committed += 1  # the copy was made; the commit past it was not
                finished.append(
                    (OffsetsStore.offset_key(group_name, topic, partition), {"offset": committed})
                )
            group = self.groups.setdefault(group_name, Group(group_name, self.defaults))
            group.partitions[(topic, partition)] = PartitionCursor(topic, partition, committed, committed)
        self._write(finished, now_ms)

    # -- membership ----------------------------------------------------------------------------

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
        """Add (or update) a member; returns its id, the group, and what must become durable."""
        check_group_name(group_name)
        if not topics:
            raise InvalidRequestError("a member subscribes to at least one topic")
        self._take_over_classic(group_name)
        for topic in topics:
            self.broker.auto_create_topic(topic, now_ms=now_ms)
            self.broker.partition_count(topic)  # it exists
            if is_internal(topic):
                raise InvalidRequestError(f"{topic!r} is internal and cannot be consumed by a group")
            dead_letter_topic(group_name, topic)
        group = self.groups.get(group_name)
        created = group is None
        if group is None:
            group = self.groups[group_name] = Group(group_name, self.defaults)
        settings = group.settings.with_overrides(ack_timeout_ms, max_deliveries, session_timeout_ms)
        changes: list[tuple[Key, dict[str, Any] | None]] = []
        if created:
            group.start = start if start is not None else "earliest"
        if created or settings != group.settings:
            group.settings = settings
            changes.append((OffsetsStore.group_key(group_name), self._settings_value(group)))
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
            changes.extend(self._rebalance(group, now_ms))
        return member.member_id, group, self._write(changes, now_ms)

    def leave(self, group_name: str, member_id: str, *, now: int, now_ms: int) -> Durable | None:
        group = self._group(group_name)
        if group.members.pop(member_id, None) is None:
            raise UnknownMemberIdError(f"member {member_id!r} is not in group {group_name!r}")
        if now >= group.assign_after:
            return self._write(self._rebalance(group, now_ms), now_ms)
        return None

    def heartbeat(self, group_name: str, member_id: str, *, now: int) -> Group:
        group, _ = self._member(group_name, member_id, now)
        return group

    def expire(self, now: int, now_ms: int) -> set[str]:
        """Apply every timeout that is due: the first assignment after its delay, session
        expiry (the member's partitions move), ack timeouts (the cursor rewinds), nack delays.
        Returns the names of the groups where something changed."""
        changed: set[str] = set()
        changes: list[tuple[Key, dict[str, Any] | None]] = []
        changed |= self.classic.expire(now)
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
                changes.extend(self._rebalance(group, now_ms))
                changed.add(group.name)
            elif group.members and not group.assign_after and self._topics_changed(group, now_ms):
                changes.extend(self._rebalance(group, now_ms))
                changed.add(group.name)
            for state in group.partitions.values():
                deadline = state.ack_deadline(group.settings.ack_timeout_ms)
                if deadline is not None and now >= deadline:
                    state.rewind(state.committed)
                    changed.add(group.name)
                if state.paused_until and now >= state.paused_until:
                    state.paused_until = 0
                    changed.add(group.name)
        self._write(changes, now_ms)
        return changed

    def next_deadline(self) -> int | None:
        """When `expire` next has something to do (monotonic ms), or None."""
        times: list[int] = []
        classic = self.classic.next_deadline()
        if classic is not None:
            times.append(classic)
        for group in self.groups.values():
            if group.assign_after and group.members:
                times.append(group.assign_after)
            times.extend(
                m.last_seen + group.settings.session_timeout_ms + 1
                for m in group.members.values()
                if not m.polling
            )
            for state in group.partitions.values():
                deadline = state.ack_deadline(group.settings.ack_timeout_ms)
                if deadline is not None:
                    times.append(deadline)
                if state.paused_until:
                    times.append(state.paused_until)
        return min(times) if times else None

    # -- delivery ------------------------------------------------------------------------------

    def poll(self, group_name: str, member_id: str, max_bytes: int, *, now: int, now_ms: int) -> PollResult:
        """Deliver what the member's partitions have, up to `max_bytes` (at least one batch)."""
        group, _ = self._member(group_name, member_id, now)
        delivered: list[Delivered] = []
        dead_letters: list[DeadLetter] = []
        if now < group.assign_after:
            return PollResult(group.generation, [], [], [])
        assignment = group.assignment(member_id)
        budget = max_bytes
        for tp in assignment:
            state = group.partitions[tp]
            if not state.deliverable(now) or state.dead_lettering is not None:
                continue
            try:
                log = self.broker.log(*tp)
            except UnknownTopicOrPartitionError:
                continue
            if state.committed < log.log_start_offset:
                # Retention deleted records the group had not consumed: they are gone.
                self._write(
                    [(OffsetsStore.offset_key(group.name, *tp), {"offset": log.log_start_offset})], now_ms
                )
                state.commit(log.log_start_offset)
            state.cursor = max(state.cursor, log.log_start_offset)
            end = self.broker.high_watermark(log)
            if state.cursor >= end:
                continue
            limit = group.settings.max_deliveries
            exhausted = state.counts.first_reaching(state.cursor, end, limit)
            if exhausted == state.cursor:
                if state.cursor == state.committed:
                    dead_letters.append(self._dead_letter(group, state, log, now_ms))
                continue  # records before it are in flight: it goes once they are done
            if exhausted is not None:
                end = exhausted
            data, after = log.read_batches(state.cursor, max(budget, 1) if not delivered else budget, end)
            if not data:
                continue
            start = state.cursor
            stop = min(after, end)
            counts = state.record_delivery(start, stop, now)
            delivered.append(Delivered(tp[0], tp[1], start, stop, data, counts))
            budget -= len(data)
            if budget <= 0:
                break
        return PollResult(group.generation, assignment, delivered, dead_letters)

    def commit(
        self,
        group_name: str,
        member_id: str,
        generation: int,
        topic: str,
        partition: int,
        offset: int,
        *,
        now: int,
        now_ms: int,
    ) -> tuple[int, Durable | None]:
        """Everything below `offset` is done; returns the committed offset and what to await."""
        group, state = self._owned(group_name, member_id, generation, topic, partition, now)
        if offset <= state.committed:
            return state.committed, None  # never backwards
        delivered = max(state.cursor, state.delivered_end)
        if offset > delivered:
            raise InvalidRequestError(
                f"cannot commit {topic}-{partition} up to {offset}: only offsets below {delivered} were delivered"
            )
        durable = self._write(
            [(OffsetsStore.offset_key(group.name, topic, partition), {"offset": offset})], now_ms
        )
        state.commit(offset)
        return offset, durable

    def nack(
        self,
        group_name: str,
        member_id: str,
        generation: int,
        topic: str,
        partition: int,
        offset: int,
        delay_ms: int,
        *,
        now: int,
        release: bool = False,
    ) -> None:
        """The member failed at `offset`: deliver again from it, after `delay_ms`. With
        `release` the member never processed those records (their delivery does not count), and
        `offset` may lie outside what is in flight: only what is in flight from it comes back."""
        if delay_ms < 0:
            raise InvalidRequestError("a nack delay must not be negative")
        _, state = self._owned(group_name, member_id, generation, topic, partition, now)
        if release or state.cursor <= offset < state.delivered_end:
            offset = max(offset, state.committed)
            if offset >= state.cursor:
                return  # not in flight: an ack timeout already took it back
        elif not state.committed <= offset < state.cursor:
            raise InvalidRequestError(
                f"offset {offset} of {topic}-{partition} is not in flight "
                f"(in flight: {state.committed} to {state.cursor - 1})"
            )
        state.nack(offset, now + delay_ms, release=release)

    def take_back_unseen(
        self, group_name: str, member_id: str, seen: dict[TopicPartition, int], *, now: int
    ) -> None:
        """The answer to an earlier poll of the member was lost: take back, uncounted, what was
        delivered to it past `seen` (per partition; a partition left out: past the committed
        offset)."""
        group, _ = self._member(group_name, member_id, now)
        for tp in group.assignment(member_id):
            state = group.partitions[tp]
            offset = max(seen.get(tp, state.committed), state.committed)
            if offset < state.cursor:
                state.nack(offset, now, release=True)

    def finish_dead_letter(self, letter: DeadLetter, *, now_ms: int) -> Durable | None:
        """The copy is durable: commit past the original record."""
        group = self.groups.get(letter.group)
        state = group.partitions.get((letter.topic, letter.partition)) if group else None
        if group is None or state is None or state.dead_lettering != letter.offset:
            return None
        state.dead_lettering = None
        committed = max(state.committed, letter.offset + 1)
        durable = self._write(
            [(OffsetsStore.offset_key(group.name, letter.topic, letter.partition), {"offset": committed})],
            now_ms,
        )
        state.commit(committed)
        return durable

    def abandon_dead_letter(self, letter: DeadLetter) -> None:
        """The copy could not be made durable: leave the record where it is (retried later)."""
        group = self.groups.get(letter.group)
        state = group.partitions.get((letter.topic, letter.partition)) if group else None
        if state is not None and state.dead_lettering == letter.offset:
            state.dead_lettering = None

    # -- Kafka's classic groups -----------------------------------------------------------------

    def classic_group(self, name: str, *, now_ms: int) -> ClassicGroup:
        """The classic group `name`, created on demand; a native group of that name without
        members is taken over, with its committed offsets."""
        if not name:
            raise InvalidGroupIdError("a group id must not be empty")
        group = self.classic.groups.get(name)
        if group is not None:
            return group
        offsets: dict[TopicPartition, tuple[int, str | None]] = {}
        native = self.groups.get(name)
        if native is not None:
            if native.members:
                raise InconsistentGroupProtocolError(
                    f"group {name!r} has members of the native protocol; a Kafka member cannot join it"
                )
            offsets = {tp: (state.committed, None) for tp, state in native.partitions.items()}
            del self.groups[name]
        group = self.classic.load(name, offsets)
        self._write([(OffsetsStore.group_key(name), {"type": CLASSIC})], now_ms)
        return group

    def commit_classic(
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
        if generation >= 0 and name not in self.classic.groups and name not in self.groups:
            # Kafka: a commit with a generation is from a member of a group that is gone.
            raise IllegalGenerationError(f"group {name!r} does not exist: no generation {generation}")
        group = self.classic_group(name, now_ms=now_ms)
        self.classic.check_commit(group, member_id, generation, now=now)
        codes: dict[TopicPartition, int] = {}
        valid: dict[TopicPartition, tuple[int, str | None]] = {}
        for tp, (offset, metadata) in offsets.items():
            try:
                if not self.broker.has_topic(tp[0]) or not 0 <= tp[1] < self.broker.partition_count(tp[0]):
                    raise UnknownTopicOrPartitionError(f"{tp[0]} has no partition {tp[1]}")
                if metadata is not None and len(metadata.encode()) > MAX_METADATA_BYTES:
                    raise OffsetMetadataTooLargeError(f"commit metadata over {MAX_METADATA_BYTES} bytes")
            except LogbrokerError as exc:
                codes[tp] = exc.code
                continue
            codes[tp] = 0
            valid[tp] = (offset, metadata)
        return codes, self._write(self.classic.commit(group, valid), now_ms)

    def fetch_offsets(
        self, name: str, wanted: list[TopicPartition] | None
    ) -> dict[TopicPartition, tuple[int, str | None]]:
        """Committed offsets of a group of either kind (-1 where there is none)."""
        committed: dict[TopicPartition, tuple[int, str | None]] = {}
        classic = self.classic.groups.get(name)
        native = self.groups.get(name)
        if classic is not None:
            committed = dict(classic.offsets)
        elif native is not None:
            committed = {tp: (state.committed, None) for tp, state in native.partitions.items()}
        if wanted is None:
            return committed
        return {tp: committed.get(tp, (-1, None)) for tp in wanted}

    def _take_over_classic(self, name: str) -> None:
        """A native join for the name of a classic group: refused while it has members, else
        the group becomes native, keeping its committed offsets."""
        classic = self.classic.groups.get(name)
        if classic is None:
            return
        if classic.members:
            raise InconsistentGroupProtocolError(
                f"group {name!r} has Kafka members; a native member cannot join it"
            )
        del self.classic.groups[name]
        group = self.groups[name] = Group(name, self.defaults)
        for tp, (offset, _) in classic.offsets.items():
            group.partitions[tp] = PartitionCursor(tp[0], tp[1], offset, offset)

    # -- admin ---------------------------------------------------------------------------------

    def describe(self, group_name: str) -> Group:
        return self._group(group_name)

    def offset_rows(self, group_name: str | None = None, topic: str | None = None) -> Iterator[OffsetRow]:
        """A row per (group, topic, partition) with a committed offset, groups of both kinds."""
        for name in sorted(self.groups.keys() | self.classic.groups.keys()):
            if group_name is not None and name != group_name:
                continue
            classic = self.classic.groups.get(name)
            if classic is not None:
                yield from self._classic_rows(classic, topic)
                continue
            group = self.groups[name]
            for (t, p), state in sorted(group.partitions.items()):
                if topic is None or t == topic:
                    row = self._row(
                        name, t, p, state.committed, state.cursor, state.in_flight_count, state.owner
                    )
                    if row is not None:
                        yield row

    def _classic_rows(self, group: ClassicGroup, topic: str | None) -> Iterator[OffsetRow]:
        owners = {
            tp: member_id
            for member_id, assignment in self.classic.assignments(group)
            for tp in assigned_partitions(assignment)
        }
        for (t, p), (committed, _) in sorted(group.offsets.items()):
            if topic is None or t == topic:
                row = self._row(group.name, t, p, committed, committed, 0, owners.get((t, p)))
                if row is not None:
                    yield row

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
            log = self.broker.log(topic, partition)
        except UnknownTopicOrPartitionError:
            return None
        end = self.broker.high_watermark(log)
        lag = max(end - committed, 0)
        return OffsetRow(
            group, topic, partition, committed, cursor, log.log_start_offset, end, lag, in_flight, owner
        )

    def reset_offsets(
        self, group_name: str, topic: str, to: str | int, *, timestamp: int | None = None, now_ms: int
    ) -> tuple[list[tuple[int, int]], Durable | None]:
        """Move the group's committed offsets of `topic` to 'earliest', 'latest', an offset, or
        (with `timestamp`) the first record at or after that time; only while the group has no
        members. Returns (partition, offset) pairs."""
        check_group_name(group_name)
        classic = self.classic.groups.get(group_name)
        if classic is not None:
            return self._reset_classic(classic, topic, to, timestamp=timestamp, now_ms=now_ms)
        group = self.groups.get(group_name)
        if group is not None and group.members:
            raise NonEmptyGroupError(
                f"group {group_name!r} has {len(group.members)} member(s); offsets can only be reset while it has none"
            )
        if group is None:
            group = self.groups[group_name] = Group(group_name, self.defaults)
        self.broker.auto_create_topic(topic, now_ms=now_ms)
        count = self.broker.partition_count(topic)
        changes: list[tuple[Key, dict[str, Any] | None]] = []
        if group_name not in {name for name, _ in self.store.groups()}:
            changes.append((OffsetsStore.group_key(group_name), self._settings_value(group)))
        result = []
        for partition in range(count):
            offset = self._reset_target(topic, partition, to, timestamp, now_ms)
            group.partitions[(topic, partition)] = PartitionCursor(topic, partition, offset, offset)
            changes.append((OffsetsStore.offset_key(group_name, topic, partition), {"offset": offset}))
            result.append((partition, offset))
        return result, self._write(changes, now_ms)

    def _reset_classic(
        self, group: ClassicGroup, topic: str, to: str | int, *, timestamp: int | None, now_ms: int
    ) -> tuple[list[tuple[int, int]], Durable | None]:
        if group.members:
            raise NonEmptyGroupError(
                f"group {group.name!r} has {len(group.members)} member(s); offsets can only be reset while it has none"
            )
        offsets = {
            (topic, p): (self._reset_target(topic, p, to, timestamp, now_ms), None)
            for p in range(self.broker.partition_count(topic))
        }
        changes = self.classic.commit(group, offsets)
        return [(p, offset) for (_, p), (offset, _) in offsets.items()], self._write(changes, now_ms)

    def _reset_target(
        self, topic: str, partition: int, to: str | int, timestamp: int | None, now_ms: int
    ) -> int:
        log = self.broker.log(topic, partition)
        end = self.broker.high_watermark(log)
        if timestamp is not None:
            return self.resolve_timestamp(topic, partition, timestamp, now_ms=now_ms)
        if to == "earliest":
            return log.log_start_offset
        if to == "latest":
            return end
        if isinstance(to, int):
            return min(max(to, log.log_start_offset), end)
        raise InvalidRequestError(f"reset to 'earliest', 'latest' or an offset, not {to!r}")

    def resolve_timestamp(self, topic: str, partition: int, timestamp: int, *, now_ms: int) -> int:
        found = self.broker.list_offset(topic, partition, timestamp)
        return found if found is not None else self.broker.high_watermark(self.broker.log(topic, partition))

    def topic_deleted(self, topic: str, *, now_ms: int) -> None:
        """Drop every group's offsets of a deleted topic. Groups that subscribe to it get a new
        assignment at the next `expire` (as when a topic they subscribe to is created)."""
        changes: list[tuple[Key, dict[str, Any] | None]] = []
        for group in self.groups.values():
            gone = [tp for tp in group.partitions if tp[0] == topic]
            for tp in gone:
                del group.partitions[tp]
                changes.append((OffsetsStore.offset_key(group.name, *tp), None))
        for classic in self.classic.groups.values():
            for tp in [tp for tp in classic.offsets if tp[0] == topic]:
                del classic.offsets[tp]
                changes.append((OffsetsStore.offset_key(classic.name, *tp), None))
        self._write(changes, now_ms)

    def maybe_compact(self, now_ms: int) -> bool:
        if self.store.needs_compaction():
            self.store.compact(now_ms)
            return True
        return False

    # -- internals -----------------------------------------------------------------------------

    def _group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            raise GroupIdNotFoundError(f"unknown group {name!r}")
        return group

    def _member(self, group_name: str, member_id: str, now: int) -> tuple[Group, Member]:
        group = self.groups.get(group_name)
        member = group.members.get(member_id) if group else None
        if group is None or member is None:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {group_name!r} (its session expired or it left): join again"
            )
        member.last_seen = now
        return group, member

    def _owned(
        self, group_name: str, member_id: str, generation: int, topic: str, partition: int, now: int
    ) -> tuple[Group, PartitionCursor]:
        group, _ = self._member(group_name, member_id, now)
        if generation != group.generation:
            raise IllegalGenerationError(
                f"generation {generation} of group {group_name!r} is over (now {group.generation}): "
                "the assignment changed"
            )
        state = group.partitions.get((topic, partition))
        if state is None or state.owner != member_id:
            raise IllegalGenerationError(f"member {member_id!r} does not own {topic}-{partition}")
        return group, state

    def _subscribed_partitions(self, group: Group, now_ms: int) -> list[TopicPartition]:
        wanted: list[TopicPartition] = []
        for topic in sorted(group.subscribed_topics()):
            if self.broker.has_topic(topic):
                wanted.extend((topic, p) for p in range(self.broker.partition_count(topic)))
        return wanted

    def _topics_changed(self, group: Group, now_ms: int) -> bool:
        """Whether a topic was created or deleted since the last assignment so that the
        partitions the group subscribes to are not the ones it assigned."""
        if group.topics_version == self.broker.topics_version:
            return False
        group.topics_version = self.broker.topics_version
        owned = {tp for tp, state in group.partitions.items() if state.owner is not None}
        return set(self._subscribed_partitions(group, now_ms)) != owned

    def _rebalance(self, group: Group, now_ms: int) -> list[tuple[Key, dict[str, Any] | None]]:
        """A new generation: assign the subscribed partitions among the members (sticky)."""
        changes: list[tuple[Key, dict[str, Any] | None]] = []
        group.topics_version = self.broker.topics_version
        wanted = self._subscribed_partitions(group, now_ms)
        current = {tp: state.owner for tp, state in group.partitions.items()}
        owners = assign(group.members, wanted, current)
        for tp, owner in owners.items():
            state = group.partitions.get(tp)
            if state is None:
                start = self._start_offset(group, tp, now_ms)
                state = group.partitions[tp] = PartitionCursor(tp[0], tp[1], start, start)
                changes.append((OffsetsStore.offset_key(group.name, *tp), {"offset": start}))
            if state.owner != owner:
                state.give_to(owner)
        for tp, state in group.partitions.items():
            if tp not in owners and state.owner is not None:
                state.give_to(None)
        group.generation += 1
        return changes

    def _start_offset(self, group: Group, tp: TopicPartition, now_ms: int) -> int:
        log = self.broker.log(*tp)
        if group.start == "latest":
            return self.broker.high_watermark(log)
        if isinstance(group.start, int):
            return self.resolve_timestamp(tp[0], tp[1], group.start, now_ms=now_ms)
        return log.log_start_offset

    def _dead_letter(
        self, group: Group, state: PartitionCursor, log: PartitionLog, now_ms: int
    ) -> DeadLetter:
        """Copy the record at the cursor to the group's dead-letter topic."""
        offset = state.cursor
        count = state.counts.count(offset)
        reason = f"delivered {count} times without an ack (max deliveries {group.settings.max_deliveries})"
        name = dead_letter_topic(group.name, state.topic)
        if not self.broker.has_topic(name):
            self.broker.create_topic(name, now_ms=now_ms)
        data = log.read(offset, 1)
        key: bytes | None = None
        value: bytes | None = None
        headers: list[tuple[str, bytes | None]] = []
        timestamp = now_ms
        try:
            _, records = decode_batch(data)
            record = next(r for r in records if r.offset == offset)
            key, value, timestamp = record.key, record.value, record.timestamp
            headers = list(record.headers)
        except (CorruptRecordError, StopIteration) as exc:
            reason += f"; the record could not be decoded ({exc}), so only its origin is kept"
        headers += [
            ("dlq.topic", state.topic.encode()),
            ("dlq.partition", str(state.partition).encode()),
            ("dlq.offset", str(offset).encode()),
            ("dlq.group", group.name.encode()),
            ("dlq.delivery_count", str(count).encode()),
            ("dlq.reason", reason.encode()),
        ]
        partitions = self.broker.partition_count(name)
        target = partition_for_key(key, partitions) if key is not None else state.partition % partitions
        batch = encode_batch([value], keys=[key], headers=[headers], timestamps=[max(timestamp, 0)])
        dlq_log = self.broker.log(name, target)
        marker = {"offset": offset, "partition": target, "from": dlq_log.next_offset}
        self._write(
            [
                (
                    OffsetsStore.offset_key(group.name, state.topic, state.partition),
                    {"offset": offset, "dead_letter": marker},
                )
            ],
            now_ms,
        )
        dlq_log.append(batch, now_ms)
        self.broker.note_appended(dlq_log)
        state.dead_lettering = offset
        return DeadLetter(
            group.name, state.topic, state.partition, offset, Durable(dlq_log, dlq_log.next_offset)
        )

    def _was_dead_lettered(
        self, group: str, topic: str, partition: int, committed: int, marker: dict[str, Any]
    ) -> bool:
        """Whether the copy a dead-letter marker announced is in the dead-letter topic."""
        try:
            if int(marker["offset"]) != committed:
                return False
            log = self.broker.log(dead_letter_topic(group, topic), int(marker["partition"]))
            offset = max(int(marker["from"]), log.log_start_offset)
        except (KeyError, TypeError, ValueError, LogbrokerError):
            return False
        origin = {
            "dlq.topic": topic.encode(),
            "dlq.partition": str(partition).encode(),
            "dlq.offset": str(committed).encode(),
            "dlq.group": group.encode(),
        }
        try:
            while offset < log.next_offset:
                data, offset = log.read_batches(offset, 1 << 20)
                if not data:
                    break
                for record in iter_records(data):
                    headers = dict(record.headers)
                    if all(headers.get(k) == v for k, v in origin.items()):
                        return True
        except LogbrokerError:
            pass
        return False

    def _write(self, changes: list[tuple[Key, dict[str, Any] | None]], now_ms: int) -> Durable | None:
        if not changes:
            return None
        end = self.store.write(changes, now_ms)
        self.broker.note_appended(self.store.log)
        return Durable(self.store.log, end)

    def _settings_value(self, group: Group) -> dict[str, Any]:
        return {
            "ack_timeout_ms": group.settings.ack_timeout_ms,
            "max_deliveries": group.settings.max_deliveries,
            "session_timeout_ms": group.settings.session_timeout_ms,
            "start": group.start,
        }

    def _settings_from(self, value: dict[str, Any]) -> GroupSettings:
        try:
            return self.defaults.with_overrides(
                int(value["ack_timeout_ms"]), int(value["max_deliveries"]), int(value["session_timeout_ms"])
            )
        except (KeyError, TypeError, ValueError, LookupError):
            return self.defaults

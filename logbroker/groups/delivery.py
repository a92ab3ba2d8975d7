"""Delivery to native group members: polls, commits (cumulative acks), nacks, and the timers
that take unacked records back (see `cursor` for the per-partition state).

A poll serves the member's partitions by reading whole batches from the partition logs, as a
fetch does: it never decodes records. Each delivery says which offsets of those batches it means
and how many times each was delivered. A record whose delivery count reached the group's
`max_deliveries` is not delivered again: once everything before it is committed it is copied to
the dead-letter topic (`dead_letters`).

Synchronous and clock-free: `now` is monotonic milliseconds, `now_ms` wall-clock milliseconds.
"""

from __future__ import annotations

import attrs

from logbroker.broker.broker import Broker, Durable, TopicPartition
from logbroker.errors import IllegalGenerationError, InvalidRequestError, UnknownTopicOrPartitionError
from logbroker.groups.cursor import PartitionCursor
from logbroker.groups.dead_letters import DeadLetter, DeadLetters
from logbroker.groups.membership import Group, Membership
from logbroker.groups.offsets_store import OffsetsStore

__all__ = ["Delivered", "Delivery", "PollResult"]


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
class PollResult:
    generation: int
    assignment: list[TopicPartition]
    delivered: list[Delivered]
    dead_letters: list[DeadLetter]


class Delivery:
    def __init__(
        self, broker: Broker, membership: Membership, dead_letters: DeadLetters, store: OffsetsStore
    ) -> None:
        self._broker = broker
        self._membership = membership
        self._dead_letters = dead_letters
        self._store = store

    def poll(self, group_name: str, member_id: str, max_bytes: int, *, now: int, now_ms: int) -> PollResult:
        """Deliver what the member's partitions have, up to `max_bytes` (at least one batch)."""
        group, _ = self._membership.member(group_name, member_id, now)
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
                log = self._broker.log(*tp)
            except UnknownTopicOrPartitionError:
                continue
            if state.committed < log.log_start_offset:
                # Retention deleted records the group had not consumed: they are gone.
                self._store.write(
                    [(OffsetsStore.offset_key(group.name, *tp), {"offset": log.log_start_offset})], now_ms
                )
                state.commit(log.log_start_offset)
            state.cursor = max(state.cursor, log.log_start_offset)
            end = self._broker.high_watermark(log)
            if state.cursor >= end:
                continue
            limit = group.settings.max_deliveries
            exhausted = state.counts.first_reaching(state.cursor, end, limit)
            if exhausted == state.cursor:
                if state.cursor == state.committed:
                    dead_letters.append(self._dead_letters.copy(group, state, log, now_ms))
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
        durable = self._store.write(
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
        group, _ = self._membership.member(group_name, member_id, now)
        for tp in group.assignment(member_id):
            state = group.partitions[tp]
            offset = max(seen.get(tp, state.committed), state.committed)
            if offset < state.cursor:
                state.nack(offset, now, release=True)

    def expire(self, now: int) -> set[str]:
        """Rewind partitions whose oldest delivery is past the ack timeout, and end nack delays
        that are over; returns the groups where something changed."""
        changed: set[str] = set()
        for group in self._membership.groups.values():
            for state in group.partitions.values():
                deadline = state.ack_deadline(group.settings.ack_timeout_ms)
                if deadline is not None and now >= deadline:
                    state.rewind(state.committed)
                    changed.add(group.name)
                if state.paused_until and now >= state.paused_until:
                    state.paused_until = 0
                    changed.add(group.name)
        return changed

    def next_deadline(self) -> int | None:
        times: list[int] = []
        for group in self._membership.groups.values():
            for state in group.partitions.values():
                deadline = state.ack_deadline(group.settings.ack_timeout_ms)
                if deadline is not None:
                    times.append(deadline)
                if state.paused_until:
                    times.append(state.paused_until)
        return min(times) if times else None

    def _owned(
        self, group_name: str, member_id: str, generation: int, topic: str, partition: int, now: int
    ) -> tuple[Group, PartitionCursor]:
        group, _ = self._membership.member(group_name, member_id, now)
        if generation != group.generation:
            raise IllegalGenerationError(
                f"generation {generation} of group {group_name!r} is over (now {group.generation}): "
                "the assignment changed"
            )
        state = group.partitions.get((topic, partition))
        if state is None or state.owner != member_id:
            raise IllegalGenerationError(f"member {member_id!r} does not own {topic}-{partition}")
        return group, state

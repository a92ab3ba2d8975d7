"""Native consumer groups for the front door that speaks them: joins and leaves, polls that wait
for records, commits acked once durable, nacks, offset resets, the views admin tools read, and
the timer that applies every group's timeouts.

Each request's state change is the coordinator's (`logbroker.groups`); what this adds is the
waiting - for an fsync before a commit or a join is answered, for records in a poll, for a dead
letter's copy to be durable before the commit past it - and the wake-ups of other requests the
change concerns (`EngineCore.group_changed`).
"""

from __future__ import annotations

import logging

import attrs
import trio

from logbroker.broker.broker import TopicPartition
from logbroker.broker.options import GroupSettings
from logbroker.engine import clock
from logbroker.engine.core import EngineCore
from logbroker.engine.fetch import MAX_WAIT_MS
from logbroker.errors import LogbrokerError
from logbroker.groups.admin import GroupView, OffsetRow
from logbroker.groups.dead_letters import DeadLetter
from logbroker.groups.delivery import PollResult

__all__ = ["Assignment", "Groups", "Joined"]

logger = logging.getLogger("logbroker.groups")

#: How long a poll waits for a dead letter's copy to become durable before it gives up (the
#: record stays where it is and a later poll tries again).
_DEAD_LETTER_WAIT_S = 10


@attrs.frozen
class Assignment:
    generation: int
    partitions: list[TopicPartition]


@attrs.frozen
class Joined:
    member_id: str
    assignment: Assignment
    settings: GroupSettings


class Groups:
    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._coordinator = core.groups

    # -- members -------------------------------------------------------------------------------

    async def join(
        self,
        group: str,
        member_id: str | None,
        client_id: str,
        topics: list[str],
        *,
        ack_timeout_ms: int | None = None,
        max_deliveries: int | None = None,
        session_timeout_ms: int | None = None,
        start: str | int | None = None,
    ) -> Joined:
        """A member joins (or updates its subscription) to topics that exist (a consumer never
        creates a topic)."""
        member_id, state, pending = self._coordinator.membership.join(
            group,
            member_id,
            client_id,
            topics,
            ack_timeout_ms=ack_timeout_ms,
            max_deliveries=max_deliveries,
            session_timeout_ms=session_timeout_ms,
            start=start,
            now=clock.monotonic_ms(),
            now_ms=clock.wall_ms(),
        )
        self._core.group_changed(group)
        await self._core.flusher.wait_durable(pending)
        return Joined(member_id, Assignment(state.generation, state.assignment(member_id)), state.settings)

    async def leave(self, group: str, member_id: str) -> None:
        pending = self._coordinator.membership.leave(
            group, member_id, now=clock.monotonic_ms(), now_ms=clock.wall_ms()
        )
        self._core.group_changed(group)
        await self._core.flusher.wait_durable(pending)

    def heartbeat(self, group: str, member_id: str) -> Assignment:
        state = self._coordinator.membership.heartbeat(group, member_id, now=clock.monotonic_ms())
        return Assignment(state.generation, state.assignment(member_id))

    def is_member(self, group: str, member_id: str) -> bool:
        state = self._coordinator.groups.get(group)
        return state is not None and member_id in state.members

    # -- delivery ------------------------------------------------------------------------------

    async def poll(
        self,
        group: str,
        member_id: str,
        *,
        max_bytes: int,
        max_wait_ms: int,
        seen: dict[TopicPartition, int] | None = None,
    ) -> PollResult:
        """Records of the member's partitions (at least one batch if any is there, at most
        `max_bytes` otherwise), waiting up to `max_wait_ms` (at most half the session timeout)
        for some. A newer poll of the same member ends this one empty. `seen`: the member lost
        the answer to an earlier poll, and had delivered to it up to these offsets."""
        coordinator = self._coordinator
        state, member = coordinator.membership.member(group, member_id, clock.monotonic_ms())
        wait_ms = min(max(max_wait_ms, 0), MAX_WAIT_MS, state.settings.session_timeout_ms // 2)
        deadline = trio.current_time() + wait_ms / 1000
        member.latest_poll += 1
        this_poll = member.latest_poll
        if member.polling:
            self._core.signals.notify_group(group)  # its older polls end
        if seen is not None:
            coordinator.delivery.take_back_unseen(group, member_id, seen, now=clock.monotonic_ms())
        member.polling += 1
        try:
            while True:
                if member.latest_poll != this_poll:  # a newer poll of the member took over
                    result = PollResult(state.generation, state.assignment(member_id), [], [])
                    break
                result = coordinator.delivery.poll(
                    group, member_id, max_bytes, now=clock.monotonic_ms(), now_ms=clock.wall_ms()
                )
                for letter in result.dead_letters:
                    await self._finish_dead_letter(letter)
                if result.dead_letters and not result.delivered:
                    continue  # the partitions dead-lettered from may have more to deliver
                if result.delivered:
                    self._core.group_timer.fire()  # ack deadlines start now
                if result.delivered or trio.current_time() >= deadline or self._core.closing:
                    break
                partitions = [tp for tp in result.assignment if self._core.broker.has_topic(tp[0])]
                with trio.move_on_at(deadline):
                    await self._core.signals.wait(partitions, [group])
        finally:
            member.polling -= 1
            member.last_seen = clock.monotonic_ms()
            self._core.group_timer.fire()  # its session deadline counts again
        return result

    async def commit(
        self, group: str, member_id: str, generation: int, topic: str, partition: int, offset: int
    ) -> int:
        """Everything below `offset` is done; answered once durable. Returns the committed
        offset (never lower than before)."""
        committed, pending = self._coordinator.delivery.commit(
            group,
            member_id,
            generation,
            topic,
            partition,
            offset,
            now=clock.monotonic_ms(),
            now_ms=clock.wall_ms(),
        )
        self._core.group_changed(group)  # a poll may wait for earlier records to be done
        await self._core.flusher.wait_durable(pending)
        return committed

    def nack(
        self,
        group: str,
        member_id: str,
        generation: int,
        topic: str,
        partition: int,
        offset: int,
        delay_ms: int,
        *,
        release: bool = False,
    ) -> None:
        self._coordinator.delivery.nack(
            group,
            member_id,
            generation,
            topic,
            partition,
            offset,
            delay_ms,
            now=clock.monotonic_ms(),
            release=release,
        )
        self._core.group_changed(group)

    async def _finish_dead_letter(self, letter: DeadLetter) -> None:
        dead_letters = self._coordinator.dead_letters
        try:
            # The copy is appended: see it made durable even if the poll is cancelled meanwhile
            # (its connection closed), or a later poll would copy the record a second time.
            with trio.CancelScope(shield=True), trio.fail_after(_DEAD_LETTER_WAIT_S):
                self._core.appended(letter.copy.topic, letter.copy.partition)
                await self._core.flusher.wait_durable(letter.copy)
        except BaseException:  # the copy could not be made durable: a later poll tries again
            dead_letters.abandon(letter)
            raise
        pending = dead_letters.finish(letter, now_ms=clock.wall_ms())
        logger.info(
            "group %s: dead-lettered %s-%d offset %d",
            letter.group,
            letter.topic,
            letter.partition,
            letter.offset,
        )
        await self._core.flusher.wait_durable(pending)
        self._core.signals.notify_group(letter.group)

    # -- admin ---------------------------------------------------------------------------------

    async def reset_offsets(
        self,
        group: str,
        topic: str,
        to: str | int,
        *,
        timestamp: int | None = None,
        create: bool = True,
        dry_run: bool = False,
    ) -> list[tuple[int, int, int]]:
        """Move a member-less group's committed offsets of `topic` (which must exist);
        (partition, committed before, new offset) triples. See `GroupAdmin.reset_offsets` for
        `create` and `dry_run`."""
        result, pending = self._coordinator.admin.reset_offsets(
            group,
            topic,
            to,
            timestamp=timestamp,
            create=create,
            dry_run=dry_run,
            now_ms=clock.wall_ms(),
        )
        await self._core.flusher.wait_durable(pending)
        return result

    def views(self) -> list[GroupView]:
        """Every group, of both kinds."""
        return self._coordinator.admin.views()

    def view(self, group: str) -> GroupView:
        return self._coordinator.admin.view(group)

    def offset_rows(self, group: str | None = None, topic: str | None = None) -> list[OffsetRow]:
        return list(self._coordinator.admin.offset_rows(group, topic))

    def committed(
        self, group: str, wanted: list[TopicPartition] | None
    ) -> dict[TopicPartition, tuple[int, str | None]]:
        """Committed offsets and their metadata (-1 where there is none), groups of both kinds."""
        return self._coordinator.admin.committed(group, wanted)

    # -- the timer -----------------------------------------------------------------------------

    async def run_timer(self) -> None:
        """Apply group timeouts when they are due: session expiry, ack timeouts, nack delays,
        the first assignment after its delay, Kafka rebalances. Runs until cancelled."""
        coordinator = self._coordinator
        while True:
            try:
                changed = coordinator.expire(clock.monotonic_ms(), clock.wall_ms())
            except LogbrokerError as exc:  # __offsets could not be written (a full disk, say)
                logger.error("consumer groups: %s; trying again in 1 s", exc.message)
                changed = set(coordinator.groups)
                deadline: int | None = clock.monotonic_ms() + 1000
            except Exception:  # a defect in one group must not stop the timer of all the others
                logger.exception("consumer groups: unexpected error in the group timer; trying again in 1 s")
                changed = set(coordinator.groups)
                deadline = clock.monotonic_ms() + 1000
            else:
                deadline = coordinator.next_deadline()
            for name in changed:
                self._core.signals.notify_group(name)
            with trio.move_on_at(deadline / 1000 if deadline is not None else float("inf")):
                await self._core.group_timer.wait()

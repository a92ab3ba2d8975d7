"""`GroupConsumer`: a member of a consumer group, with acks, nacks and redelivery.

    async with client.group_consumer("billing", ["orders"], ack_timeout=30) as consumer:
        async for message in consumer:
            try:
                handle(message)
            except Exception:
                await message.nack(delay=5)     # deliver it again in 5 s
            else:
                await message.ack()             # done: commits up to and including it

Commits are cumulative: acking a message commits it and everything before it in its partition.
What is not acked within the group's ack timeout is delivered again, each record with its
`delivery_count` raised; after `max_deliveries` a record goes to the group's dead-letter topic
`dlq.<group>.<topic>`. Joining, heartbeats, rejoining after a lost session and following
rebalances are handled here; leaving the `async with` block leaves the group.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

import trio

from logbroker.errors import (
    CorruptRecordError,
    IllegalGenerationError,
    LogbrokerError,
    UnknownMemberIdError,
)
from logbroker.protocol.messages import (
    CommitOffset,
    CommitOffsetResponse,
    GroupPoll,
    GroupPollResponse,
    Heartbeat,
    HeartbeatResponse,
    JoinGroup,
    JoinGroupResponse,
    LeaveGroup,
    Nack,
    PartitionPosition,
    TopicPartitionRef,
)
from logbroker.records.codec import Header, decode_batch_as, iter_batches

if TYPE_CHECKING:
    from logbroker.client.session import Session

__all__ = ["GroupConsumer", "GroupMessage"]

logger = logging.getLogger("logbroker.group")

TopicPartition = tuple[str, int]


class GroupMessage(tuple):  # type: ignore[type-arg]
    """A record delivered to a group member: the fields of `Message`, plus `ack()` and `nack()`."""

    __slots__ = ()

    topic: str = property(itemgetter(0))  # type: ignore[assignment]
    partition: int = property(itemgetter(1))  # type: ignore[assignment]
    offset: int = property(itemgetter(2))  # type: ignore[assignment]
    timestamp: int = property(itemgetter(3))  # type: ignore[assignment]
    key: bytes | None = property(itemgetter(4))  # type: ignore[assignment]
    value: bytes | None = property(itemgetter(5))  # type: ignore[assignment]
    headers: tuple[Header, ...] = property(itemgetter(6))  # type: ignore[assignment]
    delivery_count: int = property(itemgetter(7))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"GroupMessage(topic={self[0]!r}, partition={self[1]}, offset={self[2]}, timestamp={self[3]}, "
            f"key={self[4]!r}, value={self[5]!r}, headers={self[6]!r}, delivery_count={self[7]})"
        )

    async def ack(self) -> None:
        """Done with this message (and every earlier one of its partition): commit past it."""
        consumer: GroupConsumer = self[8]
        await consumer.commit_offset(self[0], self[1], self[2] + 1)

    async def nack(self, delay: float = 0.0) -> None:
        """Processing failed: deliver this message (and those after it) again after `delay` s."""
        consumer: GroupConsumer = self[8]
        await consumer.nack(self[0], self[1], self[2], delay)


class GroupConsumer:
    def __init__(
        self,
        client: Session,
        group: str,
        topics: Sequence[str],
        *,
        ack_timeout: float | None = None,
        max_deliveries: int | None = None,
        session_timeout: float | None = None,
        start: Literal["earliest", "latest"] | None = None,
        start_timestamp: int | None = None,
        max_wait_ms: int = 500,
        max_bytes: int = 16 << 20,
    ) -> None:
        """`ack_timeout`, `max_deliveries` and `session_timeout` (seconds) set the group's settings
        (for every member); left out, the group keeps what it has (or the broker's defaults).
        `start` / `start_timestamp` place partitions the group has no committed offset for."""
        self.client = client
        self.group = group
        self.topics = list(topics)
        self._ack_timeout_ms = None if ack_timeout is None else round(ack_timeout * 1000)
        self._session_timeout_ms = None if session_timeout is None else round(session_timeout * 1000)
        self._max_deliveries = max_deliveries
        self._start: str | int | None = start_timestamp if start_timestamp is not None else start
        self.max_wait_ms = max_wait_ms
        self.max_bytes = max_bytes
        self.member_id: str | None = None
        self.generation = -1
        self.assignment: list[TopicPartition] = []
        #: The group's settings, as the broker applies them.
        self.ack_timeout = 0.0
        self.max_deliveries = 0
        self.session_timeout = 0.0
        self._buffer: deque[GroupMessage] = deque()
        self._delivered: dict[TopicPartition, int] = {}  # end of what was delivered, per partition
        self._committed: dict[TopicPartition, int] = {}
        self._error: LogbrokerError | None = None
        #: A poll was sent and its response never read (cancelled, or the connection failed):
        #: the broker may have delivered records this member never saw.
        self._unanswered_poll = False
        self._nursery: trio.Nursery | None = None

    def dead_letter_topic(self, topic: str) -> str:
        """Where the broker copies records of `topic` that reached the group's max deliveries
        unacked: `dlq.<group>.<topic>` (the broker's naming rule, `broker.names`)."""
        return f"dlq.{self.group}.{topic}"

    # -- lifecycle -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[GroupConsumer]:
        error: BaseException | None = None
        await self._join()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._heartbeats)
            try:
                yield self
            except BaseException as exc:
                error = exc
            finally:
                # Shielded and inside the nursery: even when the caller is being cancelled, the
                # member hands back what it did not process and leaves (so its partitions move at
                # once instead of after its session times out).
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await self.release()
                    except LogbrokerError:
                        pass  # leaving hands them back as well, counted
                    await self._leave()
                nursery.cancel_scope.cancel()
                self._nursery = None
        if error is not None:
            raise error

    async def __aenter__(self) -> GroupConsumer:
        self._context = self._running()
        return await self._context.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._context.__aexit__(*exc)

    async def _join(self) -> None:
        response, _ = await self.client.request(
            JoinGroup(
                self.group,
                self.topics,
                self.member_id,
                self.client.client_id,
                self._ack_timeout_ms,
                self._max_deliveries,
                self._session_timeout_ms,
                self._start,
            )
        )
        assert isinstance(response, JoinGroupResponse)
        self.member_id = response.member_id
        self.ack_timeout = response.ack_timeout_ms / 1000
        self.max_deliveries = response.max_deliveries
        self.session_timeout = response.session_timeout_ms / 1000
        self._follow(response.generation, response.assignment)

    async def _leave(self) -> None:
        if self.member_id is None:
            return
        try:
            await self.client.request(LeaveGroup(self.group, self.member_id))
        except LogbrokerError:
            pass  # the session will expire on its own
        self.member_id = None

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(max(self.session_timeout / 3, 0.05))
            if self.member_id is None:
                continue
            try:
                response, _ = await self.client.request(Heartbeat(self.group, self.member_id))
            except UnknownMemberIdError:
                continue  # the next poll rejoins
            except LogbrokerError as exc:
                logger.debug("group %s: heartbeat failed: %s", self.group, exc.message)
                continue
            assert isinstance(response, HeartbeatResponse)
            self._follow(response.generation, response.assignment)

    def _follow(self, generation: int, assignment: list[TopicPartitionRef]) -> None:
        """Adopt a new generation: forget what is buffered for partitions no longer ours."""
        if generation == self.generation:
            return
        mine = [(tp.topic, tp.partition) for tp in assignment]
        lost = set(self.assignment) - set(mine)
        if lost:
            self._buffer = deque(m for m in self._buffer if (m[0], m[1]) not in lost)
            for tp in lost:
                self._delivered.pop(tp, None)
                self._committed.pop(tp, None)
        self.generation = generation
        self.assignment = mine

    # -- receiving -----------------------------------------------------------------------------

    def __aiter__(self) -> GroupConsumer:
        return self

    async def __anext__(self) -> GroupMessage:
        while not self._buffer:
            await self._poll()
        return self._buffer.popleft()

    async def poll(self, max_messages: int | None = None) -> list[GroupMessage]:
        """The messages one poll returns (waiting up to `max_wait_ms`; maybe none), at most
        `max_messages` of them (the rest stay for the next call)."""
        if not self._buffer:
            await self._poll()
        if max_messages is None or max_messages >= len(self._buffer):
            messages = list(self._buffer)
            self._buffer.clear()
        else:
            messages = [self._buffer.popleft() for _ in range(max_messages)]
        return messages

    async def _poll(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self.member_id is None:
            await self._join()
        assert self.member_id is not None
        seen = None
        if self._unanswered_poll:  # the broker takes back what that poll delivered
            seen = [PartitionPosition(t, p, end) for (t, p), end in self._delivered.items()]
        self._unanswered_poll = True
        try:
            response, payload = await self.client.request(
                GroupPoll(self.group, self.member_id, self.max_wait_ms, self.max_bytes, seen)
            )
        except UnknownMemberIdError:
            logger.info("group %s: the session of %s ended; joining again", self.group, self.member_id)
            self._unanswered_poll = False
            self.member_id = None
            self._buffer.clear()
            self._delivered.clear()
            self._committed.clear()
            self.generation = -1
            self.assignment = []
            return
        self._unanswered_poll = False
        assert isinstance(response, GroupPollResponse)
        self._follow(response.generation, response.assignment)
        start = 0
        for part in response.partitions:
            chunk = payload[start : start + part.size]
            start += part.size
            self._decode(part.topic, part.partition, part.start, part.end, part.counts, chunk)

    def _decode(
        self, topic: str, partition: int, first: int, end: int, counts: list[list[int]], chunk: bytes
    ) -> None:
        new = tuple.__new__
        ranges = iter(counts)
        current = next(ranges, [first, end, 1])
        consumer = self

        def make(
            offset: int, timestamp: int, key: bytes | None, value: bytes | None, headers: tuple[Header, ...]
        ) -> GroupMessage:
            nonlocal current
            while offset >= current[1]:
                current = next(ranges, [offset, end, 1])
            return new(
                GroupMessage, (topic, partition, offset, timestamp, key, value, headers, current[2], consumer)
            )

        pos = 0
        for header in iter_batches(chunk):
            if header.next_offset > first and header.base_offset < end and not header.is_control:
                try:
                    _, messages = decode_batch_as(chunk, pos, make)
                except CorruptRecordError as exc:
                    self._error = type(exc)(
                        f"{topic}-{partition}: the batch of offsets {header.base_offset}..{header.last_offset} "
                        f"cannot be decoded ({exc.message})"
                    )
                    break
                self._buffer.extend(m for m in messages if first <= m[2] < end)
            pos += header.size
        self._delivered[(topic, partition)] = max(self._delivered.get((topic, partition), 0), end)

    # -- acknowledging -------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit everything delivered so far (what is still buffered counts as delivered)."""
        for (topic, partition), end in list(self._delivered.items()):
            if end > self._committed.get((topic, partition), -1):
                await self.commit_offset(topic, partition, end)

    async def commit_offset(self, topic: str, partition: int, offset: int) -> None:
        """Everything of `topic`-`partition` below `offset` is done."""
        if self.member_id is None or offset <= self._committed.get((topic, partition), -1):
            return
        for attempt in range(2):
            try:
                response, _ = await self.client.request(
                    CommitOffset(self.group, self.member_id, self.generation, topic, partition, offset)
                )
            except IllegalGenerationError:
                if attempt == 0 and await self._refresh() and (topic, partition) in self.assignment:
                    continue  # the generation moved on but the partition is still ours
                logger.info(
                    "group %s: %s-%d is no longer ours; its records will be delivered again",
                    self.group,
                    topic,
                    partition,
                )
                return
            except UnknownMemberIdError:
                self.member_id = None
                return
            assert isinstance(response, CommitOffsetResponse)
            self._committed[(topic, partition)] = response.committed
            return

    async def release(self) -> None:
        """Hand back the messages received but not yet taken from this consumer, without
        counting their delivery (leaving the group does this)."""
        first: dict[TopicPartition, int] = {}
        for message in self._buffer:
            first.setdefault((message[0], message[1]), message[2])
        for (topic, partition), offset in first.items():
            await self.nack(topic, partition, offset, release=True)

    async def nack(
        self, topic: str, partition: int, offset: int, delay: float = 0.0, *, release: bool = False
    ) -> None:
        """Deliver `offset` and what follows it again after `delay` seconds. With `release`, the
        records were never processed: their delivery does not count."""
        if self.member_id is None:
            return
        self._buffer = deque(
            m for m in self._buffer if not (m[0] == topic and m[1] == partition and m[2] >= offset)
        )
        if (topic, partition) in self._delivered:
            self._delivered[(topic, partition)] = min(self._delivered[(topic, partition)], offset)
        for attempt in range(2):
            try:
                await self.client.request(
                    Nack(
                        self.group,
                        self.member_id,
                        self.generation,
                        topic,
                        partition,
                        offset,
                        round(delay * 1000),
                        release,
                    )
                )
            except IllegalGenerationError:
                if attempt == 0 and await self._refresh() and (topic, partition) in self.assignment:
                    continue
                return
            except UnknownMemberIdError:
                self.member_id = None
                return
            return

    async def _refresh(self) -> bool:
        """Learn the current generation and assignment; False if the member is gone."""
        if self.member_id is None:
            return False
        try:
            response, _ = await self.client.request(Heartbeat(self.group, self.member_id))
        except UnknownMemberIdError:
            self.member_id = None
            return False
        assert isinstance(response, HeartbeatResponse)
        self._follow(response.generation, response.assignment)
        return True

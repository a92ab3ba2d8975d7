"""Requests in, responses out: the one place where broker exceptions become error responses.

A produce is split in two so the connection keeps the order of appends: `produce_now` appends at
once, in the connection's read loop, and `produce_response` waits (in its own task) until the
records are as durable as the fsync policy requires. A fetch waits in its own task too (long
poll). Everything else is answered at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio

from logbroker import __version__
from logbroker.broker.broker import Broker, FetchResult, ProduceResult, TopicInfo
from logbroker.broker.classic_groups import ClassicGroup, assigned_partitions, subscribed_topics
from logbroker.broker.coordinator import DeadLetter, Durable, OffsetRow, PollResult
from logbroker.broker.group_state import Group
from logbroker.errors import (
    BrokerUnavailableError,
    InvalidRequestError,
    LogbrokerError,
    OffsetOutOfRangeError,
    RequestTimedOutError,
)
from logbroker.protocol.messages import (
    PROTOCOL_VERSION,
    RESPONSES,
    AlterTopic,
    AlterTopicResponse,
    CommitOffset,
    CommitOffsetResponse,
    CreateTopic,
    CreateTopicResponse,
    DeleteTopic,
    DeleteTopicResponse,
    DescribeGroup,
    DescribeGroupResponse,
    DescribeTopic,
    DescribeTopicResponse,
    ErrorResponse,
    Fetch,
    FetchedPartition,
    FetchResponse,
    GroupMemberInfo,
    GroupOffsetInfo,
    GroupPoll,
    GroupPollResponse,
    GroupSummary,
    Heartbeat,
    HeartbeatResponse,
    Hello,
    HelloResponse,
    JoinGroup,
    JoinGroupResponse,
    LeaveGroup,
    LeaveGroupResponse,
    ListGroupOffsets,
    ListGroupOffsetsResponse,
    ListGroups,
    ListGroupsResponse,
    ListOffsets,
    ListOffsetsResponse,
    ListTopics,
    ListTopicsResponse,
    Message,
    Nack,
    NackResponse,
    PartitionDescription,
    PolledPartition,
    Produce,
    ProduceResponse,
    ResetOffsets,
    ResetOffsetsResponse,
    TopicPartitionRef,
    TopicSummary,
)
from logbroker.server.config import ServerConfig
from logbroker.server.flusher import Flusher
from logbroker.server.signals import DataSignals
from logbroker.storage.log import PartitionLog

__all__ = ["RequestHandler", "error_response", "monotonic_ms"]

logger = logging.getLogger("logbroker.requests")

_MAX_WAIT_MS = 60_000
_DEAD_LETTER_WAIT_S = 10


def error_response(api_key: int, error: BaseException) -> Message:
    """The response of kind `api_key` that reports `error` (an unexpected one as code -1)."""
    cls = RESPONSES.get(api_key, ErrorResponse)
    if isinstance(error, LogbrokerError):
        return cls(error_code=error.code, error_message=error.message)  # type: ignore[call-arg]
    logger.exception("unexpected error while handling a request", exc_info=error)
    return cls(error_code=-1, error_message=f"internal error: {type(error).__name__}")  # type: ignore[call-arg]


class RequestHandler:
    def __init__(
        self,
        broker: Broker,
        config: ServerConfig,
        flusher: Flusher,
        signals: DataSignals,
        wall_ms: Callable[[], int],
    ) -> None:
        self.broker = broker
        self.config = config
        self.flusher = flusher
        self.signals = signals
        self.wall_ms = wall_ms
        #: Set when the server shuts down: long polls return at once, new requests are refused.
        self.closing = False
        self.ack_after_fsync = broker.durable and broker.options.fsync.mode == "always"
        #: Set after a change to group state that may move the next group deadline.
        self.group_timer_wakeup = trio.Event()

    def poke_group_timer(self) -> None:
        wakeup, self.group_timer_wakeup = self.group_timer_wakeup, trio.Event()
        wakeup.set()

    async def durable(self, pending: Durable | None) -> None:
        """Return once an append of the coordinator is as durable as the fsync policy says."""
        if pending is not None and self.ack_after_fsync:
            self.flusher.poke()
            await self.flusher.wait_flushed(pending.log, pending.next_offset)

    # -- produce -------------------------------------------------------------------------------

    def produce_now(self, request: Produce, payload: bytes) -> ProduceResult:
        """Validate and append at once (in the connection's read loop, so order is kept)."""
        if self.closing:
            raise BrokerUnavailableError("the broker is shutting down")
        if request.acks not in (-1, 0, 1):
            raise InvalidRequestError(f"acks must be 0, 1 or -1, not {request.acks}")
        now_ms = self.wall_ms()
        self.broker.auto_create_topic(request.topic, now_ms=now_ms)
        result = self.broker.produce(request.topic, request.partition, payload, now_ms=now_ms)
        if self.ack_after_fsync:
            self.flusher.poke()
        else:
            self.signals.notify(result.log)
        return result

    async def produce_response(self, request: Produce, result: ProduceResult) -> ProduceResponse:
        """Wait until the appended records are as durable as the policy says, then answer."""
        if self.ack_after_fsync:
            with trio.move_on_after(max(request.timeout_ms, 0) / 1000) as waited:
                await self.flusher.wait_flushed(result.log, result.next_offset)
            if waited.cancelled_caught:
                raise RequestTimedOutError(
                    f"the records at offsets {result.base_offset}..{result.next_offset - 1} were not made "
                    f"durable within {request.timeout_ms} ms; they may still be stored"
                )
        return ProduceResponse(base_offset=result.base_offset, next_offset=result.next_offset)

    # -- fetch ---------------------------------------------------------------------------------

    async def fetch(
        self, request: Fetch, *, max_response_bytes: int | None = None
    ) -> tuple[FetchResponse, bytes]:
        """Read every requested partition; wait (long poll) until `min_bytes` are there.

        The response holds at most `max_bytes` of the request, `max_fetch_bytes` of the server
        and `max_response_bytes` (what the connection's output queue may take), except that the
        first batch comes whole.
        """
        if request.max_bytes < 0 or request.min_bytes < 0 or request.max_wait_ms < 0:
            raise InvalidRequestError("max_bytes, min_bytes and max_wait_ms must not be negative")
        limit = min(request.max_bytes, self.config.max_fetch_bytes)
        if max_response_bytes is not None:
            limit = min(limit, max_response_bytes)
        deadline = trio.current_time() + min(request.max_wait_ms, _MAX_WAIT_MS) / 1000
        while True:
            parts, chunks, logs, total, failed = self._fetch_once(request, limit)
            remaining = deadline - trio.current_time()
            if total >= max(request.min_bytes, 1) or failed or remaining <= 0 or self.closing or not logs:
                return FetchResponse(partitions=parts), b"".join(chunks)
            with trio.move_on_after(remaining):
                await self.signals.wait(logs)

    def _fetch_once(
        self, request: Fetch, limit: int
    ) -> tuple[list[FetchedPartition], list[bytes], list[PartitionLog], int, bool]:
        parts: list[FetchedPartition] = []
        chunks: list[bytes] = []
        logs: list[PartitionLog] = []
        total = 0
        failed = False
        now_ms = self.wall_ms()
        for wanted in request.partitions:
            room = min(wanted.max_bytes, limit - total)
            try:
                self.broker.auto_create_topic(wanted.topic, now_ms=now_ms)
                result = self.broker.fetch(wanted.topic, wanted.partition, wanted.offset, max(room, 0))
                data = result.data
                logs.append(self.broker.log(wanted.topic, wanted.partition))
            except OffsetOutOfRangeError as exc:
                failed = True
                parts.append(
                    FetchedPartition(
                        wanted.topic,
                        wanted.partition,
                        exc.code,
                        exc.message,
                        log_start_offset=exc.log_start_offset,
                        log_end_offset=exc.log_end_offset,
                    )
                )
                continue
            except LogbrokerError as exc:
                failed = True
                parts.append(FetchedPartition(wanted.topic, wanted.partition, exc.code, exc.message))
                continue
            parts.append(_fetched(wanted.topic, wanted.partition, result, len(data)))
            chunks.append(data)
            total += len(data)
        return parts, chunks, logs, total, failed

    # -- everything else -----------------------------------------------------------------------

    def handle(self, request: Message) -> Message:
        """Answer a request that needs no waiting."""
        now_ms = self.wall_ms()
        broker = self.broker
        if isinstance(request, Hello):
            return HelloResponse(
                broker_version=__version__,
                protocol_version=PROTOCOL_VERSION,
                max_frame_bytes=self.config.max_frame_bytes,
                fsync=str(broker.options.fsync) if broker.durable else "memory",
            )
        if self.closing:
            raise BrokerUnavailableError("the broker is shutting down")
        if isinstance(request, CreateTopic):
            info = broker.create_topic(request.name, request.partitions, request.config, now_ms=now_ms)
            return _description(CreateTopicResponse, info)
        if isinstance(request, AlterTopic):
            info = broker.alter_topic_config(
                request.name, request.config, validate_only=request.validate_only
            )
            return _description(AlterTopicResponse, info)
        if isinstance(request, DeleteTopic):
            broker.delete_topic(request.name)
            return DeleteTopicResponse()
        if isinstance(request, ListTopics):
            topics = broker.list_topics(include_internal=request.include_internal)
            return ListTopicsResponse(topics=[TopicSummary(t.name, t.partitions, t.internal) for t in topics])
        if isinstance(request, DescribeTopic):
            if request.allow_auto_create:  # a producer looking its topic up: it may create it
                broker.auto_create_topic(request.name, now_ms=now_ms)
            return _description(DescribeTopicResponse, broker.describe_topic(request.name))
        if isinstance(request, ListOffsets):
            broker.auto_create_topic(request.topic, now_ms=now_ms)
            offset = broker.list_offset(request.topic, request.partition, request.spec)
            return ListOffsetsResponse(offset=-1 if offset is None else offset)
        groups = broker.groups
        now = monotonic_ms()
        if isinstance(request, Heartbeat):
            group = groups.heartbeat(request.group, request.member_id, now=now)
            return HeartbeatResponse(
                generation=group.generation, assignment=_refs(group.assignment(request.member_id))
            )
        if isinstance(request, Nack):
            groups.nack(
                request.group,
                request.member_id,
                request.generation,
                request.topic,
                request.partition,
                request.offset,
                request.delay_ms,
                now=now,
                release=request.release,
            )
            self.signals.notify_group(request.group)
            self.poke_group_timer()
            return NackResponse()
        if isinstance(request, ListGroups):
            summaries = [
                GroupSummary(
                    g.name,
                    len(g.members),
                    g.generation,
                    sorted({t for t, _ in g.partitions} | g.subscribed_topics()),
                )
                for g in groups.groups.values()
            ]
            summaries += [
                GroupSummary(g.name, len(g.members), g.generation, sorted(_classic_topics(g)), "kafka")
                for g in groups.classic.groups.values()
            ]
            return ListGroupsResponse(groups=sorted(summaries, key=lambda s: s.name))
        if isinstance(request, DescribeGroup):
            classic = groups.classic.groups.get(request.group)
            if classic is not None:
                return _classic_description(classic, groups.offset_rows(request.group))
            return _group_description(groups.describe(request.group), groups.offset_rows(request.group))
        if isinstance(request, ListGroupOffsets):
            return ListGroupOffsetsResponse(
                offsets=[_offset_info(r) for r in groups.offset_rows(request.group, request.topic)]
            )
        raise InvalidRequestError(f"{type(request).__name__} cannot be answered here")

    # -- consumer groups -----------------------------------------------------------------------

    async def group_request(self, request: Message) -> tuple[Message, bytes]:
        """Group requests that may wait: for an fsync, or (a poll) for records."""
        if self.closing:
            raise BrokerUnavailableError("the broker is shutting down")
        groups = self.broker.groups
        now, now_ms = monotonic_ms(), self.wall_ms()
        if isinstance(request, JoinGroup):
            member_id, group, pending = groups.join(
                request.group,
                request.member_id,
                request.client_id,
                request.topics,
                ack_timeout_ms=request.ack_timeout_ms,
                max_deliveries=request.max_deliveries,
                session_timeout_ms=request.session_timeout_ms,
                start=request.start,
                now=now,
                now_ms=now_ms,
            )
            self.signals.notify_group(request.group)
            self.poke_group_timer()
            await self.durable(pending)
            return (
                JoinGroupResponse(
                    member_id=member_id,
                    generation=group.generation,
                    assignment=_refs(group.assignment(member_id)),
                    ack_timeout_ms=group.settings.ack_timeout_ms,
                    max_deliveries=group.settings.max_deliveries,
                    session_timeout_ms=group.settings.session_timeout_ms,
                ),
                b"",
            )
        if isinstance(request, LeaveGroup):
            pending = groups.leave(request.group, request.member_id, now=now, now_ms=now_ms)
            self.signals.notify_group(request.group)
            self.poke_group_timer()
            await self.durable(pending)
            return LeaveGroupResponse(), b""
        if isinstance(request, CommitOffset):
            committed, pending = groups.commit(
                request.group,
                request.member_id,
                request.generation,
                request.topic,
                request.partition,
                request.offset,
                now=now,
                now_ms=now_ms,
            )
            self.signals.notify_group(request.group)  # a poll may wait for earlier records to be done
            self.poke_group_timer()
            await self.durable(pending)
            return CommitOffsetResponse(committed=committed), b""
        if isinstance(request, ResetOffsets):
            if request.to is None and request.timestamp is None:
                raise InvalidRequestError("reset offsets needs `to` or `timestamp`")
            result, pending = groups.reset_offsets(
                request.group,
                request.topic,
                request.to or "earliest",
                timestamp=request.timestamp,
                now_ms=now_ms,
            )
            await self.durable(pending)
            return (
                ResetOffsetsResponse(
                    partitions=[TopicPartitionRef(request.topic, p) for p, _ in result],
                    offsets=[o for _, o in result],
                ),
                b"",
            )
        if isinstance(request, GroupPoll):
            return await self._group_poll(request)
        raise InvalidRequestError(f"{type(request).__name__} is not a group request")

    async def _group_poll(self, request: GroupPoll) -> tuple[Message, bytes]:
        groups = self.broker.groups
        group = groups.groups.get(request.group)
        member = group.members.get(request.member_id) if group else None
        if group is None or member is None:
            groups.heartbeat(request.group, request.member_id, now=monotonic_ms())  # raises the right error
            raise AssertionError("unreachable")
        wait_ms = min(max(request.max_wait_ms, 0), _MAX_WAIT_MS, group.settings.session_timeout_ms // 2)
        deadline = trio.current_time() + wait_ms / 1000
        limit = min(max(request.max_bytes, 1), self.config.max_fetch_bytes)
        member.latest_poll += 1
        this_poll = member.latest_poll
        if member.polling:
            self.signals.notify_group(request.group)  # its older polls end
        if request.seen is not None:
            seen = {(p.topic, p.partition): p.offset for p in request.seen}
            groups.take_back_unseen(request.group, request.member_id, seen, now=monotonic_ms())
        member.polling += 1
        try:
            while True:
                if member.latest_poll != this_poll:  # a newer poll of the member took over
                    result = PollResult(group.generation, group.assignment(request.member_id), [], [])
                    break
                result = groups.poll(
                    request.group, request.member_id, limit, now=monotonic_ms(), now_ms=self.wall_ms()
                )
                for letter in result.dead_letters:
                    await self._finish_dead_letter(letter)
                if result.dead_letters and not result.delivered:
                    continue  # the partitions dead-lettered from may have more to deliver
                if result.delivered:
                    self.poke_group_timer()  # ack deadlines start now
                if result.delivered or trio.current_time() >= deadline or self.closing:
                    break
                logs = [self.broker.log(t, p) for t, p in result.assignment if self.broker.has_topic(t)]
                with trio.move_on_at(deadline):
                    await self.signals.wait(logs, [request.group])
        finally:
            member.polling -= 1
            member.last_seen = monotonic_ms()
            self.poke_group_timer()  # its session deadline counts again
        parts = [
            PolledPartition(d.topic, d.partition, d.start, d.end, len(d.data), [list(c) for c in d.counts])
            for d in result.delivered
        ]
        return (
            GroupPollResponse(
                generation=result.generation, assignment=_refs(result.assignment), partitions=parts
            ),
            b"".join(d.data for d in result.delivered),
        )

    async def _finish_dead_letter(self, letter: DeadLetter) -> None:
        groups = self.broker.groups
        try:
            # The copy is appended: see it made durable even if the poll is cancelled meanwhile
            # (its connection closed), or a later poll would copy the record a second time.
            with trio.CancelScope(shield=True):
                with trio.fail_after(_DEAD_LETTER_WAIT_S):
                    await self.durable(letter.copy)
        except BaseException:  # the copy could not be made durable: a later poll tries again
            groups.abandon_dead_letter(letter)
            raise
        pending = groups.finish_dead_letter(letter, now_ms=self.wall_ms())
        logger.info(
            "group %s: dead-lettered %s-%d offset %d",
            letter.group,
            letter.topic,
            letter.partition,
            letter.offset,
        )
        await self.durable(pending)
        self.signals.notify_group(letter.group)


def _fetched(topic: str, partition: int, result: FetchResult, size: int) -> FetchedPartition:
    return FetchedPartition(
        topic,
        partition,
        high_watermark=result.high_watermark,
        log_start_offset=result.log_start_offset,
        log_end_offset=result.log_end_offset,
        size=size,
    )


def _description(cls: type[DescribeTopicResponse], info: TopicInfo) -> DescribeTopicResponse:
    return cls(
        name=info.name,
        partitions=[
            PartitionDescription(
                p.partition,
                p.log_start_offset,
                p.high_watermark,
                p.log_end_offset,
                p.size_bytes,
                p.segments,
                p.damage,
                p.read_only,
            )
            for p in info.partition_info
        ],
        config=info.config,
        internal=info.internal,
        created_ms=info.created_ms,
    )


def monotonic_ms() -> int:
    """trio's clock in whole milliseconds (rounded: a deadline slept until reads as reached)."""
    return round(trio.current_time() * 1000)


def _refs(assignment: list[tuple[str, int]]) -> list[TopicPartitionRef]:
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


def _classic_topics(group: ClassicGroup) -> set[str]:
    topics = {t for t, _ in group.offsets}
    for member in group.members.values():
        topics.update(subscribed_topics(member.metadata(group.protocol_name or "")))
    return topics


def _classic_description(group: ClassicGroup, rows: Iterable[OffsetRow]) -> DescribeGroupResponse:
    protocol = group.protocol_name or ""
    return DescribeGroupResponse(
        name=group.name,
        generation=group.generation,
        session_timeout_ms=max((m.session_timeout_ms for m in group.members.values()), default=0),
        members=[
            GroupMemberInfo(
                m.member_id,
                m.client_id,
                subscribed_topics(m.metadata(protocol)),
                _refs(assigned_partitions(m.assignment)),
            )
            for m in group.members.values()
        ],
        partitions=[_offset_info(r) for r in rows],
        protocol="kafka",
        state=group.state,
    )


def _group_description(group: Group, rows: Iterable[OffsetRow]) -> DescribeGroupResponse:
    return DescribeGroupResponse(
        name=group.name,
        generation=group.generation,
        ack_timeout_ms=group.settings.ack_timeout_ms,
        max_deliveries=group.settings.max_deliveries,
        session_timeout_ms=group.settings.session_timeout_ms,
        members=[
            GroupMemberInfo(m.member_id, m.client_id, list(m.topics), _refs(group.assignment(m.member_id)))
            for m in sorted(group.members.values(), key=lambda m: m.member_id)
        ],
        partitions=[_offset_info(r) for r in rows],
    )

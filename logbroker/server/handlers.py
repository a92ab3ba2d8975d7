"""Requests in, responses out: the one place where broker exceptions become error responses.

A produce is split in two so the connection keeps the order of appends: `produce_now` appends at
once, in the connection's read loop, and `produce_response` waits (in its own task) until the
records are as durable as the fsync policy requires. A fetch waits in its own task too (long
poll). Everything else is answered at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from logbroker import __version__
from logbroker.broker.broker import Broker, FetchResult, ProduceResult, TopicInfo
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
    CreateTopic,
    CreateTopicResponse,
    DeleteTopic,
    DeleteTopicResponse,
    DescribeTopic,
    DescribeTopicResponse,
    ErrorResponse,
    Fetch,
    FetchedPartition,
    FetchResponse,
    Hello,
    HelloResponse,
    ListOffsets,
    ListOffsetsResponse,
    ListTopics,
    ListTopicsResponse,
    Message,
    PartitionDescription,
    Produce,
    ProduceResponse,
    TopicSummary,
)
from logbroker.server.config import ServerConfig
from logbroker.server.flusher import Flusher
from logbroker.server.signals import DataSignals
from logbroker.storage.log import PartitionLog

__all__ = ["RequestHandler", "error_response"]

logger = logging.getLogger("logbroker.requests")

_MAX_WAIT_MS = 60_000


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
        self._ack_after_fsync = broker.durable and config.fsync.mode == "always"

    # -- produce -------------------------------------------------------------------------------

    def produce_now(self, request: Produce, payload: bytes) -> ProduceResult:
        """Validate and append at once (in the connection's read loop, so order is kept)."""
        if self.closing:
            raise BrokerUnavailableError("the broker is shutting down")
        if request.acks not in (-1, 0, 1):
            raise InvalidRequestError(f"acks must be 0, 1 or -1, not {request.acks}")
        result = self.broker.produce(request.topic, request.partition, payload, now_ms=self.wall_ms())
        if self._ack_after_fsync:
            self.flusher.poke()
        else:
            self.signals.notify(result.log)
        return result

    async def produce_response(self, request: Produce, result: ProduceResult) -> ProduceResponse:
        """Wait until the appended records are as durable as the policy says, then answer."""
        if self._ack_after_fsync:
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
                result = self.broker.fetch(
                    wanted.topic, wanted.partition, wanted.offset, max(room, 0), now_ms=now_ms
                )
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
                fsync=str(self.config.fsync) if broker.durable else "memory",
            )
        if self.closing:
            raise BrokerUnavailableError("the broker is shutting down")
        if isinstance(request, CreateTopic):
            info = broker.create_topic(request.name, request.partitions, request.config, now_ms=now_ms)
            return _description(CreateTopicResponse, info)
        if isinstance(request, DeleteTopic):
            broker.delete_topic(request.name)
            return DeleteTopicResponse()
        if isinstance(request, ListTopics):
            topics = broker.list_topics(include_internal=request.include_internal)
            return ListTopicsResponse(topics=[TopicSummary(t.name, t.partitions, t.internal) for t in topics])
        if isinstance(request, DescribeTopic):
            if request.allow_auto_create and not broker.has_topic(request.name):
                broker.partition_count(request.name, now_ms=now_ms)  # creates it if the broker may
            return _description(DescribeTopicResponse, broker.describe_topic(request.name))
        if isinstance(request, ListOffsets):
            offset = broker.list_offset(request.topic, request.partition, request.spec, now_ms=now_ms)
            return ListOffsetsResponse(offset=-1 if offset is None else offset)
        raise InvalidRequestError(f"{type(request).__name__} cannot be answered here")


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

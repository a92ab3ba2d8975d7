"""`Consumer`: reads a topic's partitions by offset, long-polling, and yields messages in order.

    async for message in client.consumer("orders", start="earliest"):
        print(message.partition, message.offset, message.value)

It keeps a position per partition (the next offset to read) and asks the broker for all of them
in one fetch; records come out in offset order per partition. A position that falls out of the
log (retention deleted the records, or a `start` offset past the end) moves to the earliest or
latest offset, to the nearer end of the log, or raises, as `on_out_of_range` says. Nothing is
committed: that is what consumer groups are for.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from logbroker.errors import (
    CorruptRecordError,
    LogbrokerError,
    OffsetOutOfRangeError,
)
from logbroker.protocol.messages import FetchPartition
from logbroker.records.codec import Header, decode_batch_as, iter_batches

if TYPE_CHECKING:
    from logbroker.client.session import Session

__all__ = ["Consumer", "Message"]

logger = logging.getLogger("logbroker.consumer")


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    delivery_count: int = 1


class Consumer:
    def __init__(
        self,
        client: Session,
        topic: str,
        *,
        partitions: Sequence[int] | None = None,
        start: Literal["earliest", "latest"] | int = "earliest",
        start_timestamp: int | None = None,
        start_from_end: int | None = None,
        max_wait_ms: int = 500,
        max_bytes: int = 16 << 20,
        partition_max_bytes: int = 1 << 20,
        on_out_of_range: Literal["earliest", "latest", "nearest", "error"] = "earliest",
    ) -> None:
        """`start`: where to begin in every partition ('earliest', 'latest' or an offset);
        `start_timestamp` (ms) instead begins at the first record at or after that time, and
        `start_from_end` that many records before the end (at the log start if it has fewer;
        kcat's `-o -N`). `on_out_of_range`: where a position outside the log moves: 'earliest',
        'latest', 'nearest' (the log start if it is before it, the end if past it), or 'error'
        (raise `OffsetOutOfRangeError`)."""
        if start_from_end is not None and start_from_end < 0:
            raise ValueError("start_from_end must not be negative")
        self.client = client
        self.topic = topic
        self._partitions = list(partitions) if partitions is not None else None
        self._start = start
        self._start_timestamp = start_timestamp
        self._start_from_end = start_from_end
        self.max_wait_ms = max_wait_ms
        self.max_bytes = max_bytes
        self.partition_max_bytes = partition_max_bytes
        self.on_out_of_range = on_out_of_range
        #: The next offset to read, per partition.
        self.positions: dict[int, int] = {}
        self._buffer: deque[Message] = deque()
        self._ready = False
        self._error: LogbrokerError | None = None

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Message:
        while not self._buffer:
            self._raise_pending()
            await self._fetch()
        return self._buffer.popleft()

    async def poll(self) -> list[Message]:
        """The messages one fetch returns (waiting up to `max_wait_ms`; maybe none)."""
        if not self._buffer:
            self._raise_pending()
            await self._fetch()
        messages = list(self._buffer)
        self._buffer.clear()
        return messages

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset
        self._buffer = deque(m for m in self._buffer if m.partition != partition)

    async def _setup(self) -> None:
        description = await self.client.describe_topic(self.topic)
        partitions = self._partitions
        if partitions is None:
            partitions = [p.partition for p in description.partitions]
        for partition in partitions:
            if partition not in range(len(description.partitions)):
                raise LogbrokerError.from_wire(3, f"topic {self.topic!r} has no partition {partition}")
            if self._start_timestamp is not None:
                found = await self.client.list_offset(self.topic, partition, self._start_timestamp)
                self.positions[partition] = (
                    found if found is not None else await self._offset(partition, "latest")
                )
            elif self._start_from_end is not None:
                end = await self._offset(partition, "latest")
                log_start = await self._offset(partition, "earliest")
                self.positions[partition] = max(end - self._start_from_end, log_start)
            elif isinstance(self._start, int):
                self.positions[partition] = self._start
            else:
                self.positions[partition] = await self._offset(partition, self._start)
        self._ready = True

    async def _offset(self, partition: int, spec: Literal["earliest", "latest"]) -> int:
        found = await self.client.list_offset(self.topic, partition, spec)
        return found if found is not None else 0

    async def _fetch(self) -> None:
        if not self._ready:
            await self._setup()
        wanted = [
            FetchPartition(self.topic, partition, offset, self.partition_max_bytes)
            for partition, offset in self.positions.items()
        ]
        response, payload = await self.client.fetch(
            wanted, max_wait_ms=self.max_wait_ms, max_bytes=self.max_bytes
        )
        start = 0
        for part in response.partitions:
            chunk = payload[start : start + part.size]
            start += part.size
            if part.error_code == OffsetOutOfRangeError.code:
                await self._out_of_range(part.partition, part.log_start_offset, part.log_end_offset)
                continue
            if part.error_code:
                raise LogbrokerError.from_wire(part.error_code, part.error_message)
            self._decode(part.partition, chunk)

    async def _out_of_range(self, partition: int, log_start: int, log_end: int) -> None:
        position = self.positions[partition]
        if self.on_out_of_range == "error":
            raise OffsetOutOfRangeError(position, log_start, log_end)
        if self.on_out_of_range == "earliest" or (self.on_out_of_range == "nearest" and position < log_start):
            new = log_start
        else:
            new = await self._offset(partition, "latest")
        logger.warning(
            "%s-%d: offset %d is out of range (%d..%d); moving to %d",
            self.topic,
            partition,
            position,
            log_start,
            log_end,
            new,
        )
        self.positions[partition] = new

    def _decode(self, partition: int, chunk: bytes) -> None:
        position = self.positions[partition]
        topic = self.topic
        new = tuple.__new__

        def make(
            offset: int, timestamp: int, key: bytes | None, value: bytes | None, headers: tuple[Header, ...]
        ) -> Message:
            return new(Message, (topic, partition, offset, timestamp, key, value, headers, 1))

        pos = 0
        for header in iter_batches(chunk):  # a partial batch at the end is fetched again next time
            if header.next_offset > position and not header.is_control:
                try:
                    _, messages = decode_batch_as(chunk, pos, make)
                except CorruptRecordError as exc:
                    # Hand out what came before it first; the error comes with the next call.
                    self._error = type(exc)(
                        f"{topic}-{partition}: the batch of offsets {header.base_offset}..{header.last_offset} "
                        f"cannot be decoded ({exc.message}); start after offset {header.last_offset} to skip it"
                    )
                    break
                if messages[0].offset < position:
                    messages = [m for m in messages if m.offset >= position]
                self._buffer.extend(messages)
            position = max(position, header.next_offset)
            pos += header.size
        self.positions[partition] = position

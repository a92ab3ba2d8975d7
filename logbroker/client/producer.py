"""`Producer`: batches records per partition, sends them pipelined, resolves their deliveries.

    async with client.producer(linger_ms=5) as producer:
        delivery = await producer.send("orders", b"created", key=b"order-1")
        ...
        metadata = await delivery          # RecordMetadata(topic, partition, offset)

- Partitions: an explicit `partition`; else a keyed record goes where Kafka's default partitioner
  puts it (murmur2 of the key); unkeyed records fill one partition's batch, and the next batch
  goes to the next partition (round-robin, batch by batch).
- Batching: a partition's batch is sent when it reaches `batch_bytes` or `linger_ms` after its
  first record, whichever comes first. One request per partition is in flight at a time (so
  retries keep the order); requests for different partitions are pipelined on one connection.
- Backpressure: `send` waits while more than `max_buffered_bytes` are not yet acked.
- Errors: retriable ones (connection lost, storage full, timeouts) are retried with backoff until
  `delivery_timeout`; then, or for any other error, the batch's deliveries fail with it. A retry
  after a lost connection may store a batch twice (at-least-once).
- Leaving the `async with` block waits for every delivery.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Generator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from logbroker.broadcast import Broadcast
from logbroker.errors import LogbrokerError
from logbroker.records import Compression, encode_batch
from logbroker.records.codec import Header
from logbroker.records.partitioner import partition_for_key

if TYPE_CHECKING:
    from logbroker.client.session import Session

__all__ = ["Delivery", "Producer", "RecordMetadata"]

_RECORD_OVERHEAD = 24  # what a record costs in a batch beyond its key and value, roughly
_MAX_REQUEST_BYTES = 4 << 20  # batches of one partition sent together in one request, at most


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int


class _Batch:
    __slots__ = (
        "base_offset",
        "closed",
        "created",
        "deadline",
        "done",
        "error",
        "headers",
        "keys",
        "partition",
        "size",
        "timestamp",
        "timestamps",
        "topic",
        "values",
    )

    def __init__(self, topic: str, partition: int, deadline: float) -> None:
        self.topic = topic
        self.partition = partition
        self.values: list[bytes | None] = []
        self.keys: list[bytes | None] | None = None
        self.headers: list[Sequence[Header]] | None = None
        self.timestamps: list[int] | None = None
        self.timestamp = int(time.time() * 1000)
        self.size = 0
        self.created = trio.current_time()
        self.deadline = deadline
        self.done = trio.Event()
        self.base_offset = -1
        self.error: BaseException | None = None
        self.closed = False


class Delivery(tuple):  # type: ignore[type-arg]
    """The fate of one sent record: `await delivery` returns its `RecordMetadata` or raises.

    (A tuple of its batch and its index in it: one is made per record, so it is kept cheap.)
    """

    __slots__ = ()

    def done(self) -> bool:
        return bool(self[0].done.is_set())

    def result(self) -> RecordMetadata:
        batch: _Batch = self[0]
        if not batch.done.is_set():
            raise RuntimeError("the record is not acked yet")
        if batch.error is not None:
            raise batch.error
        return RecordMetadata(batch.topic, batch.partition, batch.base_offset + self[1])

    async def wait(self) -> RecordMetadata:
        await self[0].done.wait()
        return self.result()

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.wait().__await__()


class Producer:
    def __init__(
        self,
        client: Session,
        *,
        linger_ms: float = 5.0,
        batch_bytes: int = 512 * 1024,
        max_buffered_bytes: int = 64 << 20,
        delivery_timeout: float = 30.0,
        request_timeout: float = 30.0,
        compression: Compression = Compression.NONE,
        max_in_flight: int = 1,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.client = client
        self.max_in_flight = max_in_flight
        self.linger = linger_ms / 1000
        self.batch_bytes = batch_bytes
        self.max_buffered_bytes = max_buffered_bytes
        self.delivery_timeout = delivery_timeout
        self.request_timeout = request_timeout
        self.compression = compression
        #: Records acked, records whose delivery failed, and the first error a delivery failed with.
        self.acked = 0
        self.failed = 0
        self.first_error: BaseException | None = None
        #: Set when the first delivery fails (a caller feeding an endless stream can stop on it).
        self.failure = trio.Event()
        self._open: dict[tuple[str, int], _Batch] = {}
        self._ready: dict[tuple[str, int], deque[_Batch]] = {}
        self._in_flight: dict[tuple[str, int], int] = {}
        self._partitions: dict[str, int] = {}
        self._sticky: dict[str, int] = {}
        self._unkeyed: dict[str, _Batch] = {}  # the open batch unkeyed records of a topic go to
        self._buffered = 0
        self._wakeup = trio.Event()
        self._progress = Broadcast()
        self._nursery: trio.Nursery | None = None

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Producer]:
        # An error in the caller's block (a failed delivery it awaited, say) comes out as itself,
        # not wrapped in an exception group by the producer's own nursery.
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._sender, nursery)
            try:
                yield self
                await self.flush()
            except BaseException as exc:
                error = exc
            finally:
                nursery.cancel_scope.cancel()
                self._nursery = None
        if error is not None:
            raise error

    async def __aenter__(self) -> Producer:
        self._context = self._running()
        return await self._context.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._context.__aexit__(*exc)

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Delivery:
        """Queue a record; the returned `Delivery` resolves once the broker acks it.

        Waits while more than `max_buffered_bytes` are not yet acked, and the first time a topic
        is seen (to learn its partitions).
        """
        while True:
            try:
                return self.send_nowait(
                    topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
                )
            except trio.WouldBlock:
                if topic not in self._partitions:
                    await self._partition_count(topic)
                else:
                    await self._make_room()

    def send_nowait(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[Header] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Delivery:
        """`send` without waiting: raises `trio.WouldBlock` (queuing nothing) when the buffer is
        full or the topic's partitions are not known yet; `await send(...)` then."""
        if self._nursery is None:
            raise RuntimeError("use the producer in an `async with` block")
        if self._buffered > self.max_buffered_bytes:
            raise trio.WouldBlock
        if partition is None and key is None and headers is None and timestamp is None:
            # The common case, kept short: an unkeyed record for the open batch of the topic.
            batch = self._unkeyed.get(topic)
            if (
                batch is not None
                and not batch.closed
                and batch.keys is None
                and batch.headers is None
                and batch.timestamps is None
            ):
                values = batch.values
                index = len(values)
                values.append(value)
                size = _RECORD_OVERHEAD + (len(value) if value is not None else 0)
                batch.size += size
                self._buffered += size
                if batch.size >= self.batch_bytes:
                    self._close((topic, batch.partition))
                return tuple.__new__(Delivery, (batch, index))
        if partition is None:
            count = self._partitions.get(topic)
            if count is None:
                raise trio.WouldBlock
            if key is not None:
                partition = partition_for_key(key, count)
            else:
                partition = self._sticky.setdefault(topic, 0)
        slot = (topic, partition)
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = _Batch(topic, partition, trio.current_time() + self.linger)
            self._wakeup.set()
        if key is None and headers is None and self._sticky.get(topic) == partition:
            self._unkeyed[topic] = batch
        index = len(batch.values)
        batch.values.append(value)
        size = _RECORD_OVERHEAD + (len(value) if value is not None else 0)
        if key is not None or batch.keys is not None:
            if batch.keys is None:
                batch.keys = [None] * index
            batch.keys.append(key)
            size += len(key) if key is not None else 0
        if headers or batch.headers is not None:
            if batch.headers is None:
                batch.headers = [()] * index
            batch.headers.append(headers or ())
            size += sum(len(k) + len(v or b"") + 2 for k, v in headers or ())
        if timestamp is not None or batch.timestamps is not None:
            if batch.timestamps is None:
                batch.timestamps = [batch.timestamp] * index
            batch.timestamps.append(batch.timestamp if timestamp is None else timestamp)
        batch.size += size
        self._buffered += size
        if batch.size >= self.batch_bytes:
            self._close(slot)
        return tuple.__new__(Delivery, (batch, index))

    async def _make_room(self) -> None:
        await self._progress.wait_until(lambda: self._buffered <= self.max_buffered_bytes)

    async def flush(self) -> None:
        """Send everything queued now and wait until every delivery is resolved."""
        for slot in list(self._open):
            self._close(slot)
        await self._progress.wait_until(lambda: not (self._open or self._ready or self._in_flight))

    async def _partition_count(self, topic: str) -> int:
        description = await self.client.describe_topic(topic, allow_auto_create=True)
        count = len(description.partitions)
        self._partitions[topic] = count
        return count

    def _close(self, slot: tuple[str, int]) -> None:
        """A batch stops taking records and queues to be sent."""
        batch = self._open.pop(slot)
        batch.closed = True
        self._ready.setdefault(slot, deque()).append(batch)
        topic, partition = slot
        if self._sticky.get(topic) == partition:  # the next unkeyed batch goes to the next partition
            self._sticky[topic] = (partition + 1) % self._partitions.get(topic, 1)
        self._wakeup.set()

    async def _sender(self, nursery: trio.Nursery) -> None:
        while True:
            now = trio.current_time()
            for slot, batch in list(self._open.items()):
                if batch.deadline <= now:
                    self._close(slot)
            for slot in list(self._ready):
                if self._in_flight.get(slot, 0) < self.max_in_flight:
                    # Every batch that queued while the last request was in flight goes in one
                    # request (up to a size), so waiting for an fsync never throttles throughput.
                    queue = self._ready[slot]
                    batches = [queue.popleft()]
                    size = batches[0].size
                    while queue and size + queue[0].size <= _MAX_REQUEST_BYTES:
                        size += queue[0].size
                        batches.append(queue.popleft())
                    if not queue:
                        del self._ready[slot]
                    self._in_flight[slot] = self._in_flight.get(slot, 0) + 1
                    nursery.start_soon(self._deliver, batches)
            deadline = min((b.deadline for b in self._open.values()), default=float("inf"))
            wakeup = self._wakeup
            with trio.move_on_at(deadline):
                await wakeup.wait()
            if wakeup is self._wakeup:
                self._wakeup = trio.Event()

    async def _deliver(self, batches: list[_Batch]) -> None:
        """Send queued batches of one partition in one request; resolve their deliveries."""
        first = batches[0]
        error: BaseException | None = None
        try:
            data = b"".join(
                encode_batch(
                    batch.values,
                    keys=batch.keys,
                    headers=batch.headers,
                    timestamps=batch.timestamps,
                    timestamp=batch.timestamp,
                    compression=self.compression,
                )
                for batch in batches
            )
            give_up = first.created + self.delivery_timeout
            backoff = 0.05
            while True:
                try:
                    with trio.fail_after(max(give_up - trio.current_time(), 0.001)):
                        base_offset = await self.client.produce_batches(
                            first.topic, first.partition, data, broker_timeout=self.request_timeout
                        )
                    for batch in batches:
                        batch.base_offset = base_offset
                        base_offset += len(batch.values)
                        self.acked += len(batch.values)
                    break
                except trio.TooSlowError:
                    error = LogbrokerError.from_wire(
                        7, f"not acked within delivery_timeout ({self.delivery_timeout} s)"
                    )
                    break
                except LogbrokerError as exc:
                    if not exc.retriable or trio.current_time() + backoff >= give_up:
                        error = exc
                        break
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        except Exception as exc:  # encoding a bad record: fail its batches, keep the producer going
            error = exc
        finally:
            for batch in batches:
                if error is None and batch.base_offset < 0:
                    batch.error = LogbrokerError("the producer closed before the records were acked")
                elif error is not None:
                    batch.error = error
                if batch.error is not None:
                    self.failed += len(batch.values)
                    self.first_error = self.first_error or batch.error
                    self.failure.set()
                self._buffered -= batch.size
                batch.done.set()
            slot = (first.topic, first.partition)
            self._in_flight[slot] -= 1
            if not self._in_flight[slot]:
                del self._in_flight[slot]
            self._wakeup.set()
            self._progress.fire()

"""A small blocking facade over the trio client, for scripts and REPLs.

    import logbroker.sync
    with logbroker.sync.connect("127.0.0.1:9400") as client:
        client.create_topic("orders", partitions=3)
        client.produce("orders", [b"created", b"paid"], keys=[b"order-1", b"order-1"])
        for message in client.consume("orders", max_messages=2, timeout=5):
            print(message.offset, message.value)

The trio client runs in a background thread; each call waits for its result. `connect` takes
the options of `logbroker.connect`: `connect_timeout` (10 s) and `request_timeout` (30 s) bound
every call, which raises `RequestTimedOutError` when the broker does not answer in time.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import trio

from logbroker.client import Client, Message, RecordMetadata
from logbroker.client import connect as connect_async
from logbroker.client.session import TopicDescription
from logbroker.protocol.messages import TopicSummary
from logbroker.records.codec import Header

__all__ = ["SyncClient", "connect"]

T = TypeVar("T")


def connect(address: str = "127.0.0.1:9400", **options: Any) -> SyncClient:
    return SyncClient(address, **options)


class SyncClient:
    def __init__(self, address: str = "127.0.0.1:9400", **options: Any) -> None:
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: Client | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(address, options), name="logbroker-sync-client", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stop is not None and self._token is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def _main(self, address: str, options: dict[str, Any]) -> None:
        try:
            trio.run(self._loop, address, options)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _loop(self, address: str, options: dict[str, Any]) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with await connect_async(address, **options) as client:
            self._client = client
            self._ready.set()
            await self._stop.wait()

    def _call(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        if self._client is None or self._token is None:
            raise RuntimeError("the client is closed")
        client = self._client

        async def call() -> T:
            return await fn(client)

        return trio.from_thread.run(call, trio_token=self._token)

    # -- the API -------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, config: Mapping[str, Any] | None = None
    ) -> TopicDescription:
        return self._call(lambda c: c.create_topic(name, partitions, config))

    def delete_topic(self, name: str) -> None:
        self._call(lambda c: c.delete_topic(name))

    def list_topics(self, *, include_internal: bool = False) -> list[TopicSummary]:
        return self._call(lambda c: c.list_topics(include_internal=include_internal))

    def describe_topic(self, name: str) -> TopicDescription:
        return self._call(lambda c: c.describe_topic(name))

    def produce(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        headers: Sequence[Sequence[Header]] | None = None,
        partition: int | None = None,
    ) -> list[RecordMetadata]:
        """Send the records (partitioned as the producer does) and wait until all are acked."""

        async def produce(client: Client) -> list[RecordMetadata]:
            async with client.producer() as producer:
                deliveries = [
                    await producer.send(
                        topic,
                        value,
                        key=keys[i] if keys is not None else None,
                        headers=headers[i] if headers is not None else None,
                        partition=partition,
                    )
                    for i, value in enumerate(values)
                ]
            return [d.result() for d in deliveries]

        return self._call(produce)

    def consume(
        self,
        topic: str,
        *,
        start: Literal["earliest", "latest"] | int = "earliest",
        partitions: Sequence[int] | None = None,
        max_messages: int | None = None,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Read from `start` until `max_messages` arrived or `timeout` seconds passed without one
        (counted once the broker answered: a broker that does not answer is an error, raised
        after the client's `request_timeout`)."""

        async def consume(client: Client) -> list[Message]:
            consumer = client.consumer(topic, start=start, partitions=partitions)
            got: list[Message] = await consumer.poll()
            while max_messages is None or len(got) < max_messages:
                with trio.move_on_after(timeout) as waited:
                    while True:
                        batch = await consumer.poll()
                        if batch:
                            break
                if waited.cancelled_caught:
                    break
                got.extend(batch)
            return got if max_messages is None else got[:max_messages]

        return self._call(consume)

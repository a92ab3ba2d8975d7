"""`Client`: admin calls, raw produce and fetch, and the producer and consumer factories.

    client = await logbroker.connect("127.0.0.1:9400")
    await client.create_topic("orders", partitions=3)
    async with client.producer() as producer:
        await producer.send("orders", b"created", key=b"order-1")
    async for message in client.consumer("orders"):
        ...
    await client.aclose()

A client keeps one connection and opens a new one when the old one is lost (the request that
saw it go down fails with `ConnectionClosedError`, which is retriable); see `Session`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from logbroker.client.consumer import Consumer
from logbroker.client.group_consumer import GroupConsumer
from logbroker.client.producer import Producer
from logbroker.client.session import OffsetSpec, Session, TopicDescription

__all__ = ["Client", "OffsetSpec", "TopicDescription", "connect"]


async def connect(
    address: str = "127.0.0.1:9400",
    *,
    client_id: str = "logbroker-python",
    connect_timeout: float = 10.0,
    request_timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
    mechanism: str = "SCRAM-SHA-256",
) -> Client:
    """Connect to a broker; raises `ConnectionClosedError` if it cannot be reached. For a broker
    with TLS, pass `ssl_context` (see `logbroker.tls.client_context`); for one that requires a
    login, `username` and `password` (`mechanism`: SCRAM-SHA-256, SCRAM-SHA-512, or PLAIN, which
    the broker takes over TLS only).

    `connect_timeout` (seconds) bounds setting up a connection: TCP connect, TLS handshake, Hello
    and login (`ConnectionClosedError` past it); `request_timeout` each request after that, on
    top of a long poll's own wait (`RequestTimedOutError` past it, and the connection is dropped:
    the next call opens a new one)."""
    client = Client(
        address,
        client_id=client_id,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        ssl_context=ssl_context,
        username=username,
        password=password,
        mechanism=mechanism,
    )
    await client.ensure_connected()
    return client


class Client(Session):
    def producer(self, **options: Any) -> Producer:
        """A batching producer (an async context manager); see `Producer` for the options."""
        return Producer(self, **options)

    def group_consumer(self, group: str, topics: Sequence[str] | str, **options: Any) -> GroupConsumer:
        """A member of consumer group `group` (an async context manager); see `GroupConsumer`."""
        return GroupConsumer(self, group, [topics] if isinstance(topics, str) else topics, **options)

    def consumer(self, topic: str, **options: Any) -> Consumer:
        """A consumer reading `topic` by offset; see `Consumer` for the options."""
        return Consumer(self, topic, **options)

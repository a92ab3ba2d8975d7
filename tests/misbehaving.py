"""Listeners that are not a logbroker broker, or stop being one after the handshake: for the
client's timeouts and for what it says when it reached the wrong kind of port.

Each is a trio handler of one connection. `serving(handler)` runs it in the test's own trio run
(so `autojump_clock` applies) and yields its address; `ServingThread(handler)` runs it in a
thread of its own, for the CLI (a subprocess) and the blocking client.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from logbroker.kafka.protocol import KafkaProtocol, KafkaRequest, UnsupportedRequest
from logbroker.protocol.connection import NEED_DATA, Connection, Request, Response, Role
from logbroker.protocol.messages import Hello, HelloResponse

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def _read_all(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(1 << 16):
            pass
    except trio.BrokenResourceError:
        pass


async def silent(stream: trio.SocketStream) -> None:
    """Accepts, reads, never answers (`nc -l`)."""
    await _read_all(stream)


async def answers_http(stream: trio.SocketStream) -> None:
    """An HTTP server: whatever comes, a 400 answer, then the connection closes."""
    await stream.receive_some(1 << 16)
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await stream.aclose()


async def answers_like_kafka(stream: trio.SocketStream) -> None:
    """A Kafka broker that answers a request it cannot serve with an error (in Kafka's framing:
    the size, then the correlation id it read)."""
    protocol = KafkaProtocol(1 << 20)
    while True:
        protocol.receive_data(await stream.receive_some(1 << 16))
        event = protocol.next_event()
        if isinstance(event, KafkaRequest | UnsupportedRequest):
            await stream.send_all(protocol.refuse_api_versions(event.correlation_id, 35))
            await _read_all(stream)
            return


class AnswersHelloOnly:
    """A broker that answers the Hello, then nothing more: it stopped answering after the
    handshake. Counts its connections and the requests it left unanswered."""

    def __init__(self, hello: HelloResponse | None = None) -> None:
        self.connections = 0
        self.unanswered: list[str] = []
        self.hello = hello or HelloResponse()

    async def __call__(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        protocol = Connection(Role.SERVER, 1 << 20)
        try:
            while data := await stream.receive_some(1 << 16):
                protocol.receive_data(data)
                while (event := protocol.next_event()) is not NEED_DATA:
                    if not isinstance(event, Request):
                        return
                    if isinstance(event.message, Hello):
                        await stream.send_all(protocol.send(Response(event.correlation_id, self.hello)))
                    else:
                        self.unanswered.append(type(event.message).__name__)
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` on 127.0.0.1 and a free port; yields the address."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


class ServingThread:
    """`serving(handler)` in a background thread, as a plain context manager yielding the address."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._ready = threading.Event()
        self._address = ""
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with serving(self._handler) as address:
            self._address = address
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the listener did not start")
        return self._address

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None and self._token is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(10)

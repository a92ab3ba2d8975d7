"""Helpers for tests that talk to a real server over loopback."""

from __future__ import annotations

import struct

import trio

from logbroker.protocol.connection import CLOSED, NEED_DATA, Connection, Request, Response, Role
from logbroker.protocol.messages import Message


class RawClient:
    """A hand-driven protocol connection, for sending what a well-behaved client never would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.protocol = Connection(Role.CLIENT, 1 << 30)
        self.next_id = 1

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()

    async def send(self, message: Message, payload: bytes = b"") -> int:
        cid = self.next_id
        self.next_id += 1
        await self.stream.send_all(self.protocol.send(Request(cid, message, payload)))
        return cid

    async def receive(self) -> Response | None:
        """The next response, or None once the server closed the connection."""
        while True:
            event = self.protocol.next_event()
            if isinstance(event, Response):
                return event
            if event is CLOSED:
                return None
            assert event is NEED_DATA
            try:
                data = await self.stream.receive_some(1 << 20)
            except trio.BrokenResourceError:
                data = b""
            self.protocol.receive_data(data)

    async def closed_by_server(self) -> bool:
        """Read until the server closes; True if it did (responses are skipped)."""
        while True:
            try:
                data = await self.stream.receive_some(1 << 20)
            except trio.BrokenResourceError:
                return True
            if not data:
                return True


def length_prefix(n: int) -> bytes:
    return struct.pack(">I", n)

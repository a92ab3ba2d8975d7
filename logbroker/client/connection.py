"""One TCP connection to a broker, shared by any number of tasks (requests are pipelined).

Requests are matched to responses by correlation id. There is no background task: whichever
waiting task finds nobody reading becomes the reader, and hands every response it reads to the
task waiting for it, until its own arrives; then another waiter takes over. So a connection needs
no nursery, and `await connect(...)` returns a usable client.
"""

from __future__ import annotations

import itertools
import ssl

import trio

from logbroker.errors import (
    ConnectionClosedError,
    InvalidConfigError,
    LogbrokerError,
    MessageTooLargeError,
    ProtocolError,
)
from logbroker.protocol.connection import CLOSED, NEED_DATA, Connection, Request, Response, Role
from logbroker.protocol.messages import ErrorResponse, Message

__all__ = ["BrokerConnection", "parse_address"]

_RECEIVE_SIZE = 256 * 1024
_SEND_TIMEOUT = 60.0


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); `InvalidConfigError` for anything else."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise InvalidConfigError(f"expected a broker address HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


class _Slot:
    __slots__ = ("done", "payload", "response")

    def __init__(self) -> None:
        self.done = False
        self.response: Message | None = None
        self.payload = b""


class BrokerConnection:
    def __init__(self, stream: trio.abc.Stream, address: str, max_frame_size: int = 256 << 20) -> None:
        self.address = address
        self._stream = stream
        self._protocol = Connection(Role.CLIENT, max_frame_size)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Slot] = {}
        self._send_lock = trio.Lock()
        self._reading = False
        self._lot = trio.lowlevel.ParkingLot()
        self._broken: LogbrokerError | None = None
        #: The largest request frame the broker takes (from its Hello answer); larger requests
        #: are refused here, since the broker would have to drop the whole connection.
        self.max_request_bytes: int | None = None

    @classmethod
    async def open(
        cls, address: str, *, connect_timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> BrokerConnection:
        """Connect (over TLS with `ssl_context`, checking the broker's certificate for `host`)."""
        host, port = parse_address(address)
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(connect_timeout):
                stream = tcp = await trio.open_tcp_stream(host, port)
                if ssl_context is not None:
                    stream = trio.SSLStream(tcp, ssl_context, server_hostname=host)
                    await stream.do_handshake()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            if isinstance(exc, trio.TooSlowError):
                reason = "timed out"
            elif isinstance(exc, trio.BrokenResourceError):
                reason = f"TLS handshake failed: {exc.__cause__ or exc}"
            else:
                reason = exc.strerror or str(exc)
            raise ConnectionClosedError(f"cannot connect to {address}: {reason}") from None
        return cls(stream, address)

    @property
    def closed(self) -> bool:
        return self._broken is not None

    async def aclose(self) -> None:
        self._fail(ConnectionClosedError(f"connection to {self.address} closed"))
        await self._stream.aclose()

    async def request(
        self, message: Message, payload: bytes = b"", *, expect_response: bool = True
    ) -> tuple[Message, bytes]:
        """Send a request and wait for its response; raises `ConnectionClosedError` if the
        connection is or goes down (the request may or may not have been processed)."""
        if self._broken is not None:
            raise self._broken
        cid = next(self._ids) & 0x7FFFFFFF or next(self._ids)
        frame = self._protocol.send(Request(cid, message, payload))
        if self.max_request_bytes is not None and len(frame) - 4 > self.max_request_bytes:
            raise MessageTooLargeError(
                f"a request of {len(frame)} bytes is larger than the broker takes "
                f"(max_frame_bytes {self.max_request_bytes})"
            )
        slot = _Slot()
        if expect_response:
            self._pending[cid] = slot
        try:
            await self._send(frame)
            if not expect_response:
                return message, b""
            while not slot.done:
                if self._broken is not None:
                    raise self._broken
                if self._reading:
                    await self._lot.park()
                    continue
                self._reading = True
                try:
                    await self._read_until(slot)
                finally:
                    self._reading = False
                    self._lot.unpark_all()
            assert slot.response is not None
            return slot.response, slot.payload
        finally:
            self._pending.pop(cid, None)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            # A send cut short by a cancellation would leave half a frame on the wire, so it is
            # shielded, and bounded by its own timeout instead.
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _SEND_TIMEOUT
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._fail(ConnectionClosedError(f"connection to {self.address} lost: {exc}"))
                    raise self._broken from None  # type: ignore[misc]
            if scope.cancelled_caught:
                self._fail(
                    ConnectionClosedError(
                        f"connection to {self.address}: the broker took no data for {_SEND_TIMEOUT} s"
                    )
                )
                raise self._broken  # type: ignore[misc]

    async def _read_until(self, slot: _Slot) -> None:
        while not slot.done and self._broken is None:
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(ConnectionClosedError(f"connection to {self.address} lost: {exc}"))
                return
            self._protocol.receive_data(bytes(data))  # TLS streams give bytearrays
            try:
                while True:
                    event = self._protocol.next_event()
                    if event is NEED_DATA:
                        break
                    if event is CLOSED:
                        self._fail(
                            ConnectionClosedError(f"the broker at {self.address} closed the connection")
                        )
                        return
                    assert isinstance(event, Response)
                    waiting = self._pending.get(event.correlation_id)
                    if waiting is not None:
                        waiting.response = event.message
                        waiting.payload = event.payload
                        waiting.done = True
                    elif event.correlation_id == 0 and isinstance(event.message, ErrorResponse):
                        self._fail(
                            ConnectionClosedError(
                                f"the broker at {self.address} refused the connection: {event.message.error_message}"
                            )
                        )
                        return
            except ProtocolError as exc:
                self._fail(ConnectionClosedError(f"connection to {self.address}: {exc.message}"))
                return
            self._lot.unpark_all()

    def _fail(self, error: LogbrokerError) -> None:
        if self._broken is None:
            self._broken = error
        self._lot.unpark_all()

"""One TCP connection to a broker, shared by any number of tasks (requests are pipelined).

Requests are matched to responses by correlation id. There is no background task: whichever
waiting task finds nobody reading becomes the reader, and hands every response it reads to the
task waiting for it, until its own arrives; then another waiter takes over. So a connection needs
no nursery, and `await connect(...)` returns a usable client.

Timeouts: opening (TCP connect, TLS handshake) takes at most `connect_timeout`; each request at
most its `time_limit` (the connection's `request_timeout` unless given) on top of what the request
lets the broker hold it (`Message.broker_wait_ms`: a long poll's wait). A request that runs out
of time raises `RequestTimedOutError` and drops the connection: an answer that never came may
still come, and a broker that stopped answering is better asked again on a new connection.

Until the broker's first answer, the bytes it sends are kept, so that a connection that ends
before one makes sense says what answered instead (a Kafka listener, an HTTP server, TLS).
"""

from __future__ import annotations

import itertools
import math
import ssl

import trio

from logbroker.errors import (
    ConnectionClosedError,
    InvalidConfigError,
    LogbrokerError,
    MessageTooLargeError,
    ProtocolError,
    RequestTimedOutError,
    WrongListenerError,
)
from logbroker.protocol.connection import CLOSED, NEED_DATA, Connection, Request, Response, Role
from logbroker.protocol.messages import ErrorResponse, Message
from logbroker.protocol.sniff import Wire, classify_answer

__all__ = ["BrokerConnection", "parse_address"]

_RECEIVE_SIZE = 256 * 1024
#: The bytes of the broker's first answer kept to tell what answered (`protocol.sniff`).
_FIRST_BYTES = 64


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
    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        max_frame_size: int = 256 << 20,
        *,
        request_timeout: float = 30.0,
    ) -> None:
        self.address = address
        #: Seconds a request may wait for its answer (beyond the request's own wait).
        self.request_timeout = request_timeout
        self._stream = stream
        self._protocol = Connection(Role.CLIENT, max_frame_size)
        self._ids = itertools.count(1)
        self._pending: dict[int, _Slot] = {}
        self._send_lock = trio.Lock()
        self._reading = False
        self._lot = trio.lowlevel.ParkingLot()
        self._broken: LogbrokerError | None = None
        #: The first request sent and the first bytes received, until a response is understood.
        self._first_request = b""
        self._first_answer: bytearray | None = bytearray()
        #: The largest request frame the broker takes (from its Hello answer); larger requests
        #: are refused here, since the broker would have to drop the whole connection.
        self.max_request_bytes: int | None = None

    @classmethod
    async def open(
        cls,
        address: str,
        *,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = 30.0,
    ) -> BrokerConnection:
        """Connect (over TLS with `ssl_context`, checking the broker's certificate for `host`),
        within `connect_timeout` seconds."""
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
                what = "TLS handshake" if isinstance(stream, trio.SSLStream) else "TCP connect"
                reason = f"the {what} timed out after {connect_timeout:.3g} s"
            elif isinstance(exc, trio.BrokenResourceError):
                reason = f"TLS handshake failed: {exc.__cause__ or exc}"
            else:
                reason = exc.strerror or str(exc)
            raise ConnectionClosedError(f"cannot connect to {address}: {reason}") from None
        return cls(stream, address, request_timeout=request_timeout)

    @property
    def closed(self) -> bool:
        return self._broken is not None

    async def aclose(self) -> None:
        self._fail(ConnectionClosedError(f"connection to {self.address} closed"))
        await self._stream.aclose()

    async def request(
        self,
        message: Message,
        payload: bytes = b"",
        *,
        expect_response: bool = True,
        time_limit: float | None = None,
    ) -> tuple[Message, bytes]:
        """Send a request and wait for its response; raises `ConnectionClosedError` if the
        connection is or goes down (the request may or may not have been processed).

        `time_limit` (default `request_timeout`) bounds the wait, on top of `message.broker_wait_ms`:
        past it, `RequestTimedOutError`, and the connection is dropped."""
        if self._broken is not None:
            raise self._broken
        cid = next(self._ids) & 0x7FFFFFFF or next(self._ids)
        frame = self._protocol.send(Request(cid, message, payload))
        if self.max_request_bytes is not None and len(frame) - 4 > self.max_request_bytes:
            raise MessageTooLargeError(
                f"a request of {len(frame)} bytes is larger than the broker takes "
                f"(max_frame_bytes {self.max_request_bytes})"
            )
        if not self._first_request:
            self._first_request = frame[:_FIRST_BYTES]
        limit = (self.request_timeout if time_limit is None else time_limit) + message.broker_wait_ms / 1000
        deadline = trio.current_time() + limit if math.isfinite(limit) else math.inf
        slot = _Slot()
        if expect_response:
            self._pending[cid] = slot
        try:
            with trio.move_on_at(deadline) as waited:
                await self._send(frame, deadline)
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
        finally:
            self._pending.pop(cid, None)
        if waited.cancelled_caught and not slot.done:
            name = type(message).__name__
            await self._drop(f"a {name} request got no answer within {limit:.3g} s")
            raise RequestTimedOutError(
                f"the broker at {self.address} did not answer a {name} request within {limit:.3g} s"
            )
        assert slot.response is not None
        return slot.response, slot.payload

    async def _drop(self, why: str) -> None:
        """Give the connection up (a request timed out): every other request on it fails."""
        self._fail(ConnectionClosedError(f"connection to {self.address} dropped: {why}"))
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    async def _send(self, data: bytes, deadline: float) -> None:
        async with self._send_lock:
            # A send cut short by a cancellation would leave half a frame on the wire, so it is
            # shielded, and bounded by the request's deadline instead.
            with trio.CancelScope(shield=True, deadline=deadline) as scope:
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._fail(ConnectionClosedError(f"connection to {self.address} lost: {exc}"))
                    raise self._broken from None  # type: ignore[misc]
            if scope.cancelled_caught:
                self._fail(
                    ConnectionClosedError(f"connection to {self.address}: the broker took no data in time")
                )
                raise self._broken  # type: ignore[misc]

    async def _read_until(self, slot: _Slot) -> None:
        while not slot.done and self._broken is None:
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(self._unexpected(f"connection to {self.address} lost: {_why(exc)}"))
                return
            if self._first_answer is not None:
                self._first_answer += data[: _FIRST_BYTES - len(self._first_answer)]
            self._protocol.receive_data(bytes(data))  # TLS streams give bytearrays
            try:
                while True:
                    event = self._protocol.next_event()
                    if event is NEED_DATA:
                        break
                    if event is CLOSED:
                        self._fail(self._unexpected(f"the broker at {self.address} closed the connection"))
                        return
                    assert isinstance(event, Response)
                    self._first_answer = None
                    waiting = self._pending.get(event.correlation_id)
                    if waiting is not None:
                        waiting.response = event.message
                        waiting.payload = event.payload
                        waiting.done = True
                    elif event.correlation_id == 0 and isinstance(event.message, ErrorResponse):
                        # BROKER_NOT_AVAILABLE: try again later (too many connections); any other
                        # code: this port will not do (a Kafka listener).
                        refused = (
                            ConnectionClosedError
                            if event.message.error_code == ConnectionClosedError.code
                            else WrongListenerError
                        )
                        self._fail(
                            refused(
                                f"the broker at {self.address} refused the connection: {event.message.error_message}"
                            )
                        )
                        return
            except ProtocolError as exc:
                self._fail(self._unexpected(f"connection to {self.address}: {exc.message}"))
                return
            self._lot.unpark_all()

    def _unexpected(self, what: str) -> ConnectionClosedError:
        """The error for a connection that ended or broke; before the broker's first answer,
        one that says what answered, if that can be told (`protocol.sniff`)."""
        if self._first_answer is None:
            return ConnectionClosedError(what)
        answered = classify_answer(self._first_request, bytes(self._first_answer))
        if answered is Wire.KAFKA:
            what = (
                f"{self.address} is a Kafka listener (it answered in Kafka's protocol): connect to "
                "the broker's native port (logbroker serve --port, 9400 by default)"
            )
        elif answered is Wire.HTTP:
            what = f"{self.address} is an HTTP server (it answered in HTTP), not logbroker's native port"
        elif answered is Wire.TLS:
            what = f"{self.address} takes TLS connections only (it answered in TLS): connect with TLS"
        else:
            if self._first_answer:
                pass
            elif isinstance(self._stream, trio.SSLStream):  # the TLS handshake went through
                what += " before answering (does the broker require a client certificate? --tls-cert)"
            else:
                what += " before answering (is it logbroker's native port?)"
            return ConnectionClosedError(what)
        return WrongListenerError(what)

    def _fail(self, error: LogbrokerError) -> None:
        if self._broken is None:
            self._broken = error
        self._lot.unpark_all()


def _why(exc: BaseException) -> str:
    """What broke a connection, in words: a TLS alert from the broker says more than trio's
    empty BrokenResourceError (its cause)."""
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        if "CERTIFICATE_REQUIRED" in str(cause).upper() or "CERTIFICATE REQUIRED" in str(cause).upper():
            return "the broker does require a client certificate (--tls-cert, or in the ssl_context)"
        return f"TLS: {cause.reason or cause}"
    return str(cause or exc) or type(exc).__name__

"""`Connection`: the native protocol as a state machine over bytes, with no I/O (h11's shape).

    conn = Connection(Role.SERVER, max_frame_size=16 << 20)
    conn.receive_data(data)            # bytes from the socket; b"" at end of stream
    event = conn.next_event()          # Request / Response / InvalidRequest / NEED_DATA / CLOSED
    data = conn.send(Response(...))    # bytes to write to the socket

A server gets `Request` events and sends `Response`s; a client the other way round. A request
whose frame is whole but whose header does not decode (an unknown kind, a bad field) becomes an
`InvalidRequest` event, which the server answers with an error and goes on; bytes that are not
frames at all raise `ProtocolError`, after which the connection is done. Nothing else escapes.
"""

from __future__ import annotations

import enum

import attrs

from logbroker.errors import LogbrokerError, ProtocolError
from logbroker.protocol.frames import REQUEST, RESPONSE, FrameBuffer, encode_frame
from logbroker.protocol.messages import (
    REQUESTS,
    RESPONSES,
    ErrorResponse,
    Message,
    decode_message,
    encode_message,
)

__all__ = ["CLOSED", "NEED_DATA", "Connection", "InvalidRequest", "Request", "Response", "Role", "refusal"]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA = _Sentinel.NEED_DATA
CLOSED = _Sentinel.CLOSED


@attrs.frozen
class Request:
    correlation_id: int
    message: Message
    payload: bytes = b""


@attrs.frozen
class Response:
    correlation_id: int
    message: Message
    payload: bytes = b""


@attrs.frozen
class InvalidRequest:
    """A whole request frame whose header could not be decoded; answer it with `error`."""

    correlation_id: int
    api_key: int
    error: LogbrokerError


Event = Request | Response | InvalidRequest | _Sentinel


class Connection:
    def __init__(self, role: Role, max_frame_size: int) -> None:
        self.role = role
        self._frames = FrameBuffer(max_frame_size)
        self._broken: ProtocolError | None = None

    @property
    def max_frame_bytes(self) -> int:
        """Frames announcing more are refused (a server lowers it until a client logs in)."""
        return self._frames.max_frame_size

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        self._frames.max_frame_size = value

    @property
    def partial_frame(self) -> bool:
        """True while bytes of an unfinished frame are buffered (a slow or stalled sender)."""
        return self._frames.buffered > 0

    def receive_data(self, data: bytes) -> None:
        """Bytes received from the peer; `b""` means the peer closed its side."""
        self._frames.feed(data)

    def next_event(self) -> Event:
        if self._broken is not None:
            raise self._broken
        try:
            frame = self._frames.next_frame()
        except ProtocolError as exc:
            self._broken = exc
            raise
        if frame is None:
            if self._frames.at_eof:
                if self._frames.buffered:
                    self._broken = ProtocolError(
                        f"the peer closed the connection inside a frame ({self._frames.buffered} bytes)"
                    )
                    raise self._broken
                return CLOSED
            return NEED_DATA
        expected = REQUEST if self.role is Role.SERVER else RESPONSE
        if frame.kind != expected:
            self._broken = ProtocolError(f"a {self.role.value} received a frame of kind {frame.kind}")
            raise self._broken
        if self.role is Role.SERVER:
            try:
                message = decode_message(REQUESTS, frame.api_key, frame.header)
            except LogbrokerError as exc:
                return InvalidRequest(frame.correlation_id, frame.api_key, exc)
            return Request(frame.correlation_id, message, frame.payload)
        try:
            message = decode_message(RESPONSES, frame.api_key, frame.header)
        except LogbrokerError as exc:
            self._broken = ProtocolError(f"the broker sent an undecodable response: {exc.message}")
            raise self._broken from None
        return Response(frame.correlation_id, message, frame.payload)

    def send(self, event: Request | Response) -> bytes:
        """The bytes of one request (client) or response (server)."""
        if isinstance(event, Request) != (self.role is Role.CLIENT):
            raise ProtocolError(f"a {self.role.value} cannot send a {type(event).__name__}")
        kind = REQUEST if isinstance(event, Request) else RESPONSE
        api_key = type(event.message).API_KEY
        return encode_frame(kind, event.correlation_id, api_key, encode_message(event.message), event.payload)


def refusal(reason: str, *, error_code: int = 8) -> bytes:
    """An unsolicited error frame (correlation id 0) for a connection the server refuses: the
    client reports `reason` and closes. BROKER_NOT_AVAILABLE (8, the default) says that trying
    again later may work (too many connections); another code, that it will not (the wrong
    port)."""
    protocol = Connection(Role.SERVER, 1 << 20)
    return protocol.send(Response(0, ErrorResponse(error_code=error_code, error_message=reason)))

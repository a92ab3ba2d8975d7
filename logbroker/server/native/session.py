"""Hello and the login exchange (SASL) of the native protocol."""

from __future__ import annotations

from collections.abc import Awaitable

from logbroker import __version__
from logbroker.errors import LogbrokerError
from logbroker.protocol.messages import (
    PROTOCOL_VERSION,
    Hello,
    HelloResponse,
    Message,
    SaslAuthenticate,
    SaslAuthenticateResponse,
    SaslHandshake,
    SaslHandshakeResponse,
)
from logbroker.server.connection import BaseConnection

Reply = tuple[Message, bytes]


def hello(conn: BaseConnection, request: Hello, payload: bytes) -> Reply:
    conn.client_id = request.client_id
    broker = conn.engine.broker
    return (
        HelloResponse(
            broker_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            max_frame_bytes=conn.config.max_frame_bytes,
            fsync=str(broker.options.fsync) if broker.durable else "memory",
            sasl_mechanisms=conn.mechanisms(),
        ),
        b"",
    )


def sasl_handshake(conn: BaseConnection, request: SaslHandshake, payload: bytes) -> Reply:
    try:
        offered = conn.login_handshake(request.mechanism)
    except LogbrokerError as exc:  # not offered, out of turn, or the address must wait
        if conn.principal is None:
            conn.refuse_before_login("a SASL handshake that failed")  # as Kafka does
        return SaslHandshakeResponse(exc.code, exc.message, mechanisms=conn.mechanisms()), b""
    return SaslHandshakeResponse(mechanisms=offered), b""


def sasl_authenticate(
    conn: BaseConnection, request: SaslAuthenticate, token: bytes
) -> Reply | Awaitable[Reply]:
    """The client's next login token travels as the payload, and so does the broker's answer."""
    reply = conn.authenticate(token)
    if isinstance(reply, bytes):
        return SaslAuthenticateResponse(principal=conn.principal), reply

    async def hashed() -> Reply:
        token = await reply
        return SaslAuthenticateResponse(principal=conn.principal), token

    return hashed()

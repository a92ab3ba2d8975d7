"""SaslHandshake and SaslAuthenticate: a Kafka client's login. After a v1 handshake the
mechanism's tokens come in SaslAuthenticate requests (here); after a v0 one as bare frames,
which `KafkaConnection` hands to the same `BaseConnection.authenticate`."""

from __future__ import annotations

from collections.abc import Awaitable

from logbroker.errors import LogbrokerError
from logbroker.kafka.protocol import KafkaRequest
from logbroker.server.connection import BaseConnection
from logbroker.server.kafka.answers import Body

__all__ = ["sasl_authenticate", "sasl_authenticate_error", "sasl_handshake"]


def sasl_handshake(conn: BaseConnection, request: KafkaRequest) -> Body:
    try:
        offered, code = conn.login_handshake(request.body["mechanism"]), 0
    except LogbrokerError as exc:  # not offered, out of turn, or the address must wait
        offered, code = conn.mechanisms(), exc.code
        if conn.principal is None:
            conn.refuse_before_login("a SASL handshake that failed")  # Kafka closes it too
    return {"error_code": code, "mechanisms": offered}


def sasl_authenticate(conn: BaseConnection, request: KafkaRequest) -> Body | Awaitable[Body]:
    reply = conn.authenticate(request.body["auth_bytes"] or b"")
    if isinstance(reply, bytes):
        return _answer(reply)

    async def hashed() -> Body:
        return _answer(await reply)

    return hashed()


def sasl_authenticate_error(body: Body, code: int, message: str | None = None) -> Body:
    return {"error_code": code, "error_message": message, "auth_bytes": b""}


def _answer(token: bytes) -> Body:
    return {"error_code": 0, "error_message": None, "auth_bytes": token, "session_lifetime_ms": 0}

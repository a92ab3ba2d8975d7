"""`NativeConnection`: a connection of the native protocol. Requests are pipelined and answered
in any order, each matched by its correlation id; every request goes through the table of
`endpoints`."""

from __future__ import annotations

import inspect
import logging

import trio

from logbroker.engine.engine import Engine
from logbroker.errors import BrokerUnavailableError, LogbrokerError, SaslAuthenticationError
from logbroker.protocol.connection import Connection, InvalidRequest, Request, Response, Role
from logbroker.protocol.messages import RESPONSES, ErrorResponse, Message
from logbroker.protocol.sniff import Wire
from logbroker.server.config import ServerConfig
from logbroker.server.connection import BaseConnection, Ports
from logbroker.server.native.endpoints import ENDPOINTS, Reply
from logbroker.server.security import Security

__all__ = ["NativeConnection", "error_response"]

logger = logging.getLogger("logbroker.connections")
requests_logger = logging.getLogger("logbroker.requests")


class NativeConnection(BaseConnection):
    wire = Wire.NATIVE

    def __init__(
        self,
        stream: trio.abc.Stream,
        engine: Engine,
        config: ServerConfig,
        security: Security,
        ports: Ports | None = None,
    ) -> None:
        self._native = Connection(Role.SERVER, config.max_frame_bytes)
        super().__init__(stream, engine, config, self._native, security, ports=ports)

    def _dispatch(self, event: Request | InvalidRequest, nursery: trio.Nursery) -> None:
        if isinstance(event, InvalidRequest):
            logger.debug("%s: invalid request: %s", self.peer, event.error.message)
            self._respond(event.correlation_id, error_response(event.api_key, event.error))
            if self.principal is None:
                self.refuse_before_login("an invalid request")
            return
        request, cid = event.message, event.correlation_id
        endpoint = ENDPOINTS[type(request)]
        if self.principal is None and not endpoint.login:
            error = SaslAuthenticationError("this broker requires a login first (SASL)")
            self._respond(cid, error_response(request.API_KEY, error))
            self.refuse_before_login(type(request).__name__)
            return
        if self.principal is not None:
            self.charge_request()
        try:
            if endpoint.member:
                self.security.check_member(self.principal or "", request.group, request.member_id)  # type: ignore[attr-defined]
            self.admit(request, endpoint.needs, endpoint.creates)
            if self.engine.closing and not endpoint.login:
                raise BrokerUnavailableError("the broker is shutting down")
            answer = endpoint.handle(self, request, event.payload)
        except Exception as exc:
            if isinstance(exc, LogbrokerError):
                logger.debug("%s: %s refused: %s", self.peer, type(request).__name__, exc.message)
            if endpoint.quiet(request):
                self._in_flight.release()
            else:
                self._respond(cid, error_response(request.API_KEY, exc))
            return
        if answer is None:
            self._in_flight.release()
        elif inspect.isawaitable(answer):
            pending = answer

            async def waited() -> None:
                try:
                    response, payload = await pending
                except Exception as exc:
                    response, payload = error_response(request.API_KEY, exc), b""
                self._respond(cid, response, payload)

            self._run_task(nursery, waited)
        else:
            reply: Reply = answer
            self._respond(cid, *reply)

    def _respond(self, cid: int, response: Message, payload: bytes = b"") -> None:
        self._in_flight.release()
        self.send(self._native.send(Response(cid, response, payload)))


def error_response(api_key: int, error: BaseException) -> Message:
    """The response of kind `api_key` that reports `error` (an unexpected one as code -1, its
    traceback logged): the one place where this protocol's errors become answers."""
    cls = RESPONSES.get(api_key, ErrorResponse)
    if isinstance(error, LogbrokerError):
        return cls(error_code=error.code, error_message=error.message)  # type: ignore[call-arg]
    requests_logger.exception("unexpected error while handling a request", exc_info=error)
    return cls(error_code=-1, error_message=f"internal error: {type(error).__name__}")  # type: ignore[call-arg]

"""`KafkaConnection`: one Kafka client connection, requests read and dispatched in order and
answered in order.

Kafka clients rely on a connection answering requests in the order it received them. Each
request takes a slot in a queue when it is read; a slot is filled when its answer is ready (at
once, or when a produce is durable, a fetch has data, a rebalance completes) and answers leave
from the front of the queue only. A produce is appended the moment it is read, so appends keep
their arrival order while several produces wait for their fsync together (group commit). Any
other request begins only once every earlier request on the connection is answered, as Kafka
handles one request of a connection at a time: a ListOffsets or Fetch sent right behind a
produce sees that produce's records, and a fetch never waits for output budget that answers
queued behind it hold.

Every request goes through the table of `endpoints`: what it may do before a login, what the
ACLs must allow, its handler and its error shape. A principal over a quota gets its answer with
`throttle_time_ms` set and no further request is read for that long. acks=0 produces get no
answer and take no slot. An ApiVersions request of a version not served gets Kafka's fallback
answer (KIP-511); any other request for an API or version not served, or whose body does not
decode, closes the connection with the reason logged, as Kafka does.

After a SaslHandshake v0, the login's tokens arrive as bare frames (`SaslToken`): each goes to
the same `authenticate` as a SaslAuthenticate request's bytes and is answered with a bare frame,
in order like any answer; a failed login gets no answer and the connection closes, as in Kafka.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from logbroker.engine.engine import Engine
from logbroker.errors import LogbrokerError
from logbroker.kafka.apis import API_VERSIONS
from logbroker.kafka.protocol import (
    KafkaProtocol,
    KafkaRequest,
    SaslToken,
    UnsupportedRequest,
    served_versions,
)
from logbroker.protocol.sniff import Wire
from logbroker.server.config import ServerConfig
from logbroker.server.connection import BaseConnection, Ports
from logbroker.server.kafka.answers import Body, code_of
from logbroker.server.kafka.endpoints import ENDPOINTS, Endpoint
from logbroker.server.security import Security
from logbroker.storage.fs import Buffer

__all__ = ["KafkaConnection"]

logger = logging.getLogger("logbroker.kafka")

#: The codes of the authorization refusals, by resource type.
_DENIED_CODES = {"topic": 29, "group": 30, "cluster": 31}


class _Slot:
    """The place of one request's answer in the connection's queue of answers."""

    __slots__ = ("data", "held", "size", "start")

    def __init__(self) -> None:
        self.data: list[Buffer] | None = None
        self.size = 0
        #: The answer was ready before an earlier one, and waits (counted in `_held`).
        self.held = False
        #: The work of a request that waits for every earlier answer before it begins.
        self.start: Callable[[], None] | None = None


class KafkaConnection(BaseConnection):
    wire = Wire.KAFKA

    def __init__(
        self,
        stream: trio.abc.Stream,
        engine: Engine,
        config: ServerConfig,
        security: Security,
        advertised: tuple[str, int],
        ports: Ports | None = None,
    ) -> None:
        self._kafka = KafkaProtocol(config.max_frame_bytes)
        super().__init__(stream, engine, config, self._kafka, security, advertised, ports)
        self._slots: deque[_Slot] = deque()
        self._advancing = False

    def _dispatch(self, event: KafkaRequest | UnsupportedRequest | SaslToken, nursery: trio.Nursery) -> None:
        if isinstance(event, SaslToken):
            slot = self._slot()
            slot.start = lambda: self._take_token(slot, event.token, nursery)
            self._advance()
            return
        self.client_id = event.client_id  # each request names its client
        if isinstance(event, UnsupportedRequest):
            if event.api_key == API_VERSIONS.key:
                self._fill(self._slot(), [self._kafka.api_versions_fallback(event, served_versions())])
                return
            self._in_flight.release()
            logger.warning("%s (client %r): closing: %s", self.peer, event.client_id, event.reason)
            self.close(f"protocol: {event.reason}")
            return
        endpoint = ENDPOINTS[event.api.key]
        if self.principal is None:
            if not endpoint.login:
                self._in_flight.release()
                self.refuse_before_login(f"{event.api.name} (client {event.client_id!r})")
                self.close(self.close_reason or "login required")
                return
        else:
            self.charge_request()
        if endpoint.at_once:
            self._begin(None, endpoint, event, nursery)
            return
        slot = self._slot()
        slot.start = lambda: self._begin(slot, endpoint, event, nursery)
        self._advance()

    def _begin(
        self, slot: _Slot | None, endpoint: Endpoint, request: KafkaRequest, nursery: trio.Nursery
    ) -> None:
        """Work on a request: at once for a produce (`slot` None: it takes one once appended,
        unless it wants no answer), otherwise once every earlier request is answered."""
        refused: KafkaRequest | None = None
        try:
            self.admit(request, endpoint.needs)
            if endpoint.items is not None and self.security.authorize:
                request, refused = self._take_refused_items(endpoint, request)
            answer = endpoint.handle(self, request)
        except Exception as exc:
            answer = (
                None if endpoint.quiet(request) else endpoint.error_body(request.body, code_of(exc), str(exc))
            )
        if answer is None:  # a produce with acks=0: no answer, whatever happened
            self._in_flight.release()
            return
        if slot is None:
            slot = self._slot()
        if inspect.isawaitable(answer):
            self._wait(slot, endpoint, request, answer, refused, nursery)
        else:
            self._answer(slot, endpoint, request, answer, refused)

    def _wait(
        self,
        slot: _Slot,
        endpoint: Endpoint,
        request: KafkaRequest,
        work: Awaitable[Body],
        refused: KafkaRequest | None,
        nursery: trio.Nursery,
    ) -> None:
        async def answer() -> None:
            try:
                body = await work
            except Exception as exc:
                body = endpoint.error_body(request.body, code_of(exc), str(exc))
            self._answer(slot, endpoint, request, body, refused)

        self._run_task(nursery, answer)

    def _answer(
        self, slot: _Slot, endpoint: Endpoint, request: KafkaRequest, body: Body, refused: KafkaRequest | None
    ) -> None:
        if refused is not None:
            self._add_refused(endpoint, body, refused)
        # Tell the client how long it is held back (Kafka's throttle_time_ms, KIP-219).
        if "throttle_time_ms" in body:
            body["throttle_time_ms"] = max(body["throttle_time_ms"], self.throttled_ms)
        self._fill(slot, self._kafka.respond(request, body))

    # -- a login's bare tokens (after SaslHandshake v0) ----------------------------------------

    def _take_token(self, slot: _Slot, token: bytes, nursery: trio.Nursery) -> None:
        try:
            reply = self.authenticate(token)
        except LogbrokerError:  # refused (and logged): no answer, the connection closes
            self._fill(slot, [])
            return
        if isinstance(reply, bytes):
            self._fill(slot, [self._kafka.respond_token(reply, logged_in=self.principal is not None)])
            return

        async def hashed() -> None:
            try:
                token = await reply
            except LogbrokerError:
                self._fill(slot, [])
                return
            self._fill(slot, [self._kafka.respond_token(token, logged_in=self.principal is not None)])

        self._run_task(nursery, hashed)

    # -- authorization item by item --------------------------------------------------------------

    def _take_refused_items(
        self, endpoint: Endpoint, request: KafkaRequest
    ) -> tuple[KafkaRequest, KafkaRequest | None]:
        """The request without the items the principal may not touch, and a request of just
        those (None when every item is allowed)."""
        items = endpoint.items
        assert items is not None
        allowed: list[Any] = []
        denied: list[Any] = []
        for item in request.body[items.request_key]:
            need = items.need(item)
            (allowed if need is None or self.may(*need) else denied).append(item)
        if not denied:
            return request, None
        keep = attrs.evolve(request, body={**request.body, items.request_key: allowed})
        return keep, attrs.evolve(request, body={**request.body, items.request_key: denied})

    def _add_refused(self, endpoint: Endpoint, body: Body, refused: KafkaRequest) -> None:
        """Answer the refused items beside the others, each with the refusal of its kind."""
        items = endpoint.items
        assert items is not None
        answers = list(body.get(items.answer_key) or [])
        for item in refused.body[items.request_key]:
            need = items.need(item)
            code = _DENIED_CODES[need[1]] if need is not None else _DENIED_CODES["topic"]
            one = {**refused.body, items.request_key: [item]}
            answers += endpoint.error_body(one, code)[items.answer_key]
        body[items.answer_key] = answers

    # -- answers in order ----------------------------------------------------------------------

    def _slot(self) -> _Slot:
        slot = _Slot()
        self._slots.append(slot)
        return slot

    def _fill(self, slot: _Slot, data: list[Buffer]) -> None:
        slot.data = data
        slot.size = sum(len(part) for part in data)
        self._in_flight.release()
        if self._slots[0] is not slot:
            slot.held = True
            self._held += slot.size  # output that counts against the budget, though not sent yet
        self._advance()

    def _advance(self) -> None:
        """Send the answers at the front of the queue, and begin the request that waited for
        them (which may answer at once, and so on)."""
        if self._advancing:
            return  # a `start` below answered synchronously: the loop below sends it
        self._advancing = True
        try:
            slots = self._slots
            while slots:
                front = slots[0]
                if front.data is not None:
                    slots.popleft()
                    if front.held:
                        self._held -= front.size
                    self.send(front.data)
                elif front.start is not None:
                    start, front.start = front.start, None
                    start()
                else:
                    break
        finally:
            self._advancing = False

"""One Kafka client connection: requests read and dispatched in order, answered in order.

Kafka clients rely on a connection answering requests in the order it received them. Each
request takes a slot in a queue when it is read; a slot is filled when its answer is ready (at
once, or when a produce is durable, a fetch has data, a rebalance completes) and answers leave
from the front of the queue only. A produce is appended the moment it is read, so appends keep
their arrival order while several produces wait for their fsync together (group commit). Any
other request begins only once every earlier request on the connection is answered, as Kafka
handles one request of a connection at a time: a ListOffsets or Fetch sent right behind a
produce sees that produce's records, and a fetch never waits for output budget that answers
queued behind it hold.

On a broker that requires a login, only ApiVersions, SaslHandshake and SaslAuthenticate are
taken before one succeeds; anything else closes the connection, as Kafka does. ACLs are checked
before a request's work begins (`logbroker.kafka.authorize`); a principal over a quota gets its
answer with `throttle_time_ms` set and no further request is read for that long.

acks=0 produces get no answer and take no slot. An ApiVersions request of a version not served
gets Kafka's fallback answer (KIP-511); any other request for an API or version not served, or
whose body does not decode, closes the connection with the reason logged, as Kafka does.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from logbroker.errors import LogbrokerError
from logbroker.kafka.apis import (
    API_VERSIONS,
    FETCH,
    INIT_PRODUCER_ID,
    JOIN_GROUP,
    METADATA,
    OFFSET_COMMIT,
    PRODUCE,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    SYNC_GROUP,
)
from logbroker.kafka.authorize import add_refused, filter_body, item_refusals, metadata_refusals, needs_of
from logbroker.kafka.handlers import KafkaHandler, code_of, error_body
from logbroker.kafka.protocol import KafkaProtocol, KafkaRequest, UnsupportedRequest, served_versions
from logbroker.server.connection import BaseConnection
from logbroker.server.security import Security

if TYPE_CHECKING:
    from logbroker.server.config import ServerConfig

__all__ = ["KafkaConnection"]

logger = logging.getLogger("logbroker.kafka")


class _Slot:
    """The place of one request's answer in the connection's queue of answers."""

    __slots__ = ("data", "held", "start")

    def __init__(self) -> None:
        self.data: bytes | None = None
        #: The answer was ready before an earlier one, and waits (counted in `_held`).
        self.held = False
        #: The work of a request that waits for every earlier answer before it begins.
        self.start: Callable[[], None] | None = None


class KafkaConnection(BaseConnection):
    def __init__(
        self, stream: trio.abc.Stream, handler: KafkaHandler, config: ServerConfig, security: Security
    ) -> None:
        self._kafka = KafkaProtocol(config.max_frame_bytes)
        super().__init__(stream, config, self._kafka, security)
        self._handler = handler
        self._slots: deque[_Slot] = deque()
        self._advancing = False

    def _dispatch(self, event: KafkaRequest | UnsupportedRequest, nursery: trio.Nursery) -> None:
        if isinstance(event, UnsupportedRequest):
            if event.api_key == API_VERSIONS.key:
                self._fill(self._slot(), self._kafka.api_versions_fallback(event, served_versions()))
                return
            self._in_flight.release()
            logger.warning("%s (client %r): closing: %s", self.peer, event.client_id, event.reason)
            self.close(f"protocol: {event.reason}")
            return
        principal = self.principal
        if principal is None:
            if event.api not in (API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE):
                self._in_flight.release()
                self.refuse_before_login(f"{event.api.name} (client {event.client_id!r})")
                self.close(self.close_reason or "login required")
                return
        else:
            self.charge_request()
        if event.api is PRODUCE:
            pending = self._handler.produce_now(event, self._refusal(principal or "", "write"))
            self._charge_produce(principal or "", event)
            if event.body["acks"] == 0:
                self._in_flight.release()  # no answer, whatever happened (Kafka's rule)
                return
            self._wait(self._slot(), nursery, event, lambda: self._handler.produce_response(pending))
            return
        slot = self._slot()
        slot.start = lambda: self._begin(slot, event, nursery)
        self._advance()

    def _begin(self, slot: _Slot, event: KafkaRequest, nursery: trio.Nursery) -> None:
        """Work on a request that is not a produce, once every earlier request is answered."""
        handler = self._handler
        api = event.api
        if api is SASL_HANDSHAKE or api is SASL_AUTHENTICATE:
            self._login_request(slot, event, nursery)
            return
        try:
            self._authorize(event)
        except LogbrokerError as exc:
            self._fill(slot, self._kafka.respond(event, error_body(event, exc.code)))
            return
        if api is FETCH:
            self._wait(slot, nursery, event, lambda: self._fetch_within_budget(event))
        elif api is JOIN_GROUP:
            self._wait(slot, nursery, event, lambda: handler.join_group(event, self.host))
        elif api is SYNC_GROUP:
            self._wait(slot, nursery, event, lambda: handler.sync_group(event))
        elif api is OFFSET_COMMIT:
            self._wait(slot, nursery, event, lambda: handler.offset_commit(event))
        else:
            principal = self.principal or ""
            denied = (
                metadata_refusals(event, principal, self.security, handler.broker) if api is METADATA else []
            )
            refused = item_refusals(event, principal, self.security) if self.principal is not None else None
            try:
                body = handler.answer(event)
                filter_body(event, body, principal, self.security, denied)
                if refused is not None:
                    add_refused(event, body, refused)
            except Exception as exc:
                body = error_body(event, code_of(exc))
            self._report_throttle(event, body)
            self._fill(slot, self._kafka.respond(event, body))

    # -- security ------------------------------------------------------------------------------

    def _authorize(self, event: KafkaRequest) -> None:
        principal = self.principal
        if principal is None:
            return  # ApiVersions (everything else was refused before a login)
        if self.security.authorize:
            self.security.check(principal, needs_of(event))
        if event.api is INIT_PRODUCER_ID and not self.security.may_write_somewhere(principal):
            # Kafka >= 2.8: an idempotent producer needs WRITE on some topic.
            self.security.check(principal, [("write", "cluster", "kafka-cluster")])

    def _refusal(self, principal: str, operation: str) -> Callable[[str], int]:
        security = self.security
        if not security.authorize:
            return lambda _: 0
        return lambda topic: security.denied_code(principal, operation, "topic", topic)

    def _charge_produce(self, principal: str, event: KafkaRequest) -> None:
        quotas = self.security.quotas
        if not quotas.enabled:
            return
        size = sum(
            len(part["records"] or b"")
            for topic in event.body["topic_data"]
            for part in topic["partition_data"]
        )
        self.throttle(quotas.produce(principal, trio.current_time(), size))

    def _login_request(self, slot: _Slot, event: KafkaRequest, nursery: trio.Nursery) -> None:
        body = event.body
        if event.api is SASL_HANDSHAKE:
            try:
                offered = self.login_handshake(body["mechanism"])
                code = 0
            except LogbrokerError as exc:
                offered, code = self.mechanisms(), exc.code
            self._fill(slot, self._kafka.respond(event, {"error_code": code, "mechanisms": offered}))
            if code and self.principal is None:
                self.refuse_before_login("a SASL handshake that failed")  # Kafka closes it too
            return

        def answer(reply: bytes) -> None:
            body = {"error_code": 0, "error_message": None, "auth_bytes": reply, "session_lifetime_ms": 0}
            self._fill(slot, self._kafka.respond(event, body))

        def refuse(exc: LogbrokerError) -> None:
            body = {"error_code": exc.code, "error_message": exc.message, "auth_bytes": b""}
            self._fill(slot, self._kafka.respond(event, body))

        self.login_step(body["auth_bytes"] or b"", answer, refuse, nursery)

    def _wait(
        self,
        slot: _Slot,
        nursery: trio.Nursery,
        request: KafkaRequest,
        work: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        async def answer() -> None:
            try:
                body = await work()
            except Exception as exc:
                body = error_body(request, code_of(exc))
            self._report_throttle(request, body)
            self._fill(slot, self._kafka.respond(request, body))

        self._run_task(nursery, answer)

    async def _fetch_within_budget(self, request: KafkaRequest) -> dict[str, Any]:
        budget = await self.reserve_output()
        try:
            body = await self._handler.fetch(request, budget, self._refusal(self.principal or "", "read"))
        finally:
            self.release_output(budget)
        if self.principal is not None and self.security.quotas.enabled:
            size = sum(len(p["records"] or b"") for t in body["responses"] for p in t["partitions"])
            self.throttle(self.security.quotas.fetch(self.principal, trio.current_time(), size))
        return body

    def _report_throttle(self, request: KafkaRequest, body: dict[str, Any]) -> None:
        """Tell the client how long it is held back (Kafka's throttle_time_ms, KIP-219)."""
        wait = self._muted_until - trio.current_time()
        if wait > 0 and "throttle_time_ms" in body:
            body["throttle_time_ms"] = max(body["throttle_time_ms"], round(wait * 1000))

    def _slot(self) -> _Slot:
        slot = _Slot()
        self._slots.append(slot)
        return slot

    def _fill(self, slot: _Slot, data: bytes) -> None:
        slot.data = data
        self._in_flight.release()
        if self._slots[0] is not slot:
            slot.held = True
            self._held += len(data)  # output that counts against the budget, though not sent yet
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
                        self._held -= len(front.data)
                    self.send(front.data)
                elif front.start is not None:
                    start, front.start = front.start, None
                    start()
                else:
                    break
        finally:
            self._advancing = False

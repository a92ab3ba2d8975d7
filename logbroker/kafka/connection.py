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

from logbroker.kafka.apis import API_VERSIONS, FETCH, JOIN_GROUP, OFFSET_COMMIT, PRODUCE, SYNC_GROUP
from logbroker.kafka.handlers import KafkaHandler, code_of, error_body
from logbroker.kafka.protocol import KafkaProtocol, KafkaRequest, UnsupportedRequest, served_versions
from logbroker.server.connection import BaseConnection

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
    def __init__(self, stream: trio.abc.Stream, handler: KafkaHandler, config: ServerConfig) -> None:
        self._kafka = KafkaProtocol(config.max_frame_bytes)
        super().__init__(stream, config, self._kafka)
        self._handler = handler
        self._slots: deque[_Slot] = deque()
        self._advancing = False
        self._host = self.peer.rpartition(":")[0]

    def _dispatch(self, event: KafkaRequest | UnsupportedRequest, nursery: trio.Nursery) -> None:
        if isinstance(event, UnsupportedRequest):
            if event.api_key == API_VERSIONS.key:
                self._fill(self._slot(), self._kafka.api_versions_fallback(event, served_versions()))
                return
            self._in_flight.release()
            logger.warning("%s (client %r): closing: %s", self.peer, event.client_id, event.reason)
            self.close(f"protocol: {event.reason}")
            return
        if event.api is PRODUCE:
            pending = self._handler.produce_now(event)
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
        if api is FETCH:
            self._wait(slot, nursery, event, lambda: self._fetch_within_budget(event))
        elif api is JOIN_GROUP:
            self._wait(slot, nursery, event, lambda: handler.join_group(event, self._host))
        elif api is SYNC_GROUP:
            self._wait(slot, nursery, event, lambda: handler.sync_group(event))
        elif api is OFFSET_COMMIT:
            self._wait(slot, nursery, event, lambda: handler.offset_commit(event))
        else:
            try:
                body = handler.answer(event)
            except Exception as exc:
                body = error_body(event, code_of(exc))
            self._fill(slot, self._kafka.respond(event, body))

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
            self._fill(slot, self._kafka.respond(request, body))

        self._run_task(nursery, answer)

    async def _fetch_within_budget(self, request: KafkaRequest) -> dict[str, Any]:
        budget = await self.reserve_output()
        try:
            return await self._handler.fetch(request, budget)
        finally:
            self.release_output(budget)

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

"""One Kafka client connection: requests read and dispatched in order, answered in order.

Kafka clients rely on a connection answering requests in the order it received them. Each
request takes a slot in a queue when it is read; a slot is filled when its answer is ready (at
once, or when a produce is durable, a fetch has data, a rebalance completes) and answers leave
from the front of the queue only. A produce is still appended the moment it is read, so appends
keep their arrival order while several produces wait for their fsync together (group commit).

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
    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | None = None


class KafkaConnection(BaseConnection):
    def __init__(self, stream: trio.SocketStream, handler: KafkaHandler, config: ServerConfig) -> None:
        self._kafka = KafkaProtocol(config.max_frame_bytes)
        super().__init__(stream, config, self._kafka)
        self._handler = handler
        self._slots: deque[_Slot] = deque()
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
        handler = self._handler
        api = event.api
        if api is PRODUCE:
            pending = handler.produce_now(event)
            if event.body["acks"] == 0:
                self._in_flight.release()  # no answer, whatever happened (Kafka's rule)
                return
            self._wait(nursery, event, lambda: handler.produce_response(pending))
        elif api is FETCH:
            turn = self.output_turn()
            self._wait(nursery, event, lambda: self._fetch_within_budget(event, turn))
        elif api is JOIN_GROUP:
            self._wait(nursery, event, lambda: handler.join_group(event, self._host))
        elif api is SYNC_GROUP:
            self._wait(nursery, event, lambda: handler.sync_group(event))
        elif api is OFFSET_COMMIT:
            self._wait(nursery, event, lambda: handler.offset_commit(event))
        else:
            slot = self._slot()
            try:
                body = handler.answer(event)
            except Exception as exc:
                body = error_body(event, code_of(exc))
            self._fill(slot, self._kafka.respond(event, body))

    def _wait(
        self, nursery: trio.Nursery, request: KafkaRequest, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        slot = self._slot()

        async def answer() -> None:
            try:
                body = await work()
            except Exception as exc:
                body = error_body(request, code_of(exc))
            self._fill(slot, self._kafka.respond(request, body))

        self._run_task(nursery, answer)

    async def _fetch_within_budget(self, request: KafkaRequest, turn: int) -> dict[str, Any]:
        budget = await self.reserve_output(turn)
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
        slots = self._slots
        if slots[0] is not slot:
            self._held += len(data)  # output that counts against the budget, though not sent yet
            return
        slots.popleft()
        self.send(data)
        while slots and slots[0].data is not None:
            ready = slots.popleft().data
            assert ready is not None
            self._held -= len(ready)
            self.send(ready)

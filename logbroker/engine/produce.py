"""Produce for both front doors: append now, ack once as durable as the fsync policy says.

The split is what keeps pipelined produces in order while they share fsyncs: a front door calls
`append` the moment it reads a produce (in the connection's read loop, so appends keep the order
requests arrived in), and then, in a task of its own, `acked` - which under `fsync=always` waits
for the flush round that covers the records, and otherwise returns at once. acks=0 and acks=1
differ only in whether the front door answers; on one node acks=1 and acks=-1 (all) are the same
thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from logbroker.broker.broker import ProduceResult
from logbroker.engine import clock
from logbroker.engine.core import EngineCore
from logbroker.errors import LogbrokerError, RequestTimedOutError
from logbroker.records.batch import BatchHeader
from logbroker.storage.fs import Buffer

__all__ = ["Produce"]


class Produce:
    def __init__(self, core: EngineCore) -> None:
        self._core = core

    def append(
        self, topic: str, partition: int, data: Buffer, *, headers: list[BatchHeader] | None = None
    ) -> ProduceResult:
        """Validate and append the batches in `data` now; raises what the broker refuses.
        `headers`: the batches' headers, if the caller already validated them."""
        result = self._core.broker.produce(topic, partition, data, now_ms=clock.wall_ms(), headers=headers)
        self._core.appended(topic, partition)
        return result

    async def acked(
        self, results: Sequence[ProduceResult | None], timeout_s: float
    ) -> list[LogbrokerError | None]:
        """Wait until the appended records are as durable as the fsync policy says, at most
        `timeout_s`; per result None (acked) or the error to answer with (the records may still
        be stored). A None result stands for a partition that was refused: it stays None."""
        errors: list[LogbrokerError | None] = [None] * len(results)
        flusher = self._core.flusher
        if not flusher.acks_wait:
            return errors
        waited = [result is None for result in results]
        with trio.move_on_after(max(timeout_s, 0)):
            for i, result in enumerate(results):
                if result is None:
                    continue
                try:
                    await flusher.wait_durable(result.durable)
                except LogbrokerError as exc:
                    errors[i] = exc
                waited[i] = True
        broker = self._core.broker
        for i, result in enumerate(results):
            if waited[i] or result is None:
                continue
            # The time ran out before this one's turn: the round that covered an earlier one
            # may have covered it too.
            try:
                durable = broker.flushed_offset(result.topic, result.partition) >= result.next_offset
            except LogbrokerError as exc:  # the topic was deleted meanwhile
                errors[i] = exc
                continue
            if not durable:
                errors[i] = RequestTimedOutError(
                    f"the records at offsets {result.base_offset}..{result.next_offset - 1} were not made "
                    f"durable within {timeout_s * 1000:.0f} ms; they may still be stored"
                )
        return errors

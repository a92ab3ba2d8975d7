"""Fetch for both front doors: whole stored batches of several partitions, with a long poll.

A fetch reads every partition it names, up to a byte limit, and returns at once if it has at
least `min_bytes` (or, for Kafka's clients, is full; or a partition failed); otherwise it waits - until new records
become visible in one of its partitions, the wait is over, or the engine shuts down - and reads
again. What consumers may see is the broker's high watermark: under `fsync=always` only what is
fsynced.

Limits: each partition gets at most its own `max_bytes` and what is left of the request's;
batches are never split, and with `first_batch_whole` the answer's first batch comes whole even
if it is larger than the limits (Kafka's KIP-74: a consumer always moves on).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from logbroker.broker.broker import TopicPartition
from logbroker.engine.core import EngineCore
from logbroker.errors import LogbrokerError, OffsetOutOfRangeError, UnsupportedCompressionError
from logbroker.records.codec import iter_batches
from logbroker.records.compression import Compression

__all__ = ["MAX_WAIT_MS", "Fetch", "Fetched", "FetchWant"]

#: The longest a fetch or a group poll waits for records, whatever it asks for.
MAX_WAIT_MS = 60_000


@attrs.frozen
class FetchWant:
    topic: str
    partition: int
    offset: int
    max_bytes: int
    #: Why the reader may not read this partition (an ACL's refusal): answered with it.
    refused: LogbrokerError | None = None


@attrs.frozen
class Fetched:
    """One partition's answer: its batches, or the error that stopped it."""

    topic: str
    partition: int
    data: bytes = b""
    error: LogbrokerError | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    log_end_offset: int = -1


class Fetch:
    def __init__(self, core: EngineCore) -> None:
        self._core = core

    async def fetch(
        self,
        wants: Sequence[FetchWant],
        *,
        max_bytes: int,
        min_bytes: int,
        max_wait_ms: int,
        first_batch_whole: bool = False,
        full_is_enough: bool = True,
        accepts_zstd: bool = True,
    ) -> list[Fetched]:
        """Read every partition of `wants`, in order; wait (long poll) until `min_bytes` are
        there, a partition fails, or `max_wait_ms` passes; with `full_is_enough` (Kafka's rule)
        also once the answer is full, below `min_bytes`. `accepts_zstd` False: the reader cannot
        decode zstd batches (Kafka's Fetch before v10), so a partition that has them is answered
        with UNSUPPORTED_COMPRESSION."""
        limit = max(max_bytes, 0)
        deadline = trio.current_time() + min(max(max_wait_ms, 0), MAX_WAIT_MS) / 1000
        while True:
            parts, readable, total, failed = self._read(wants, limit, first_batch_whole, accepts_zstd)
            if (
                total >= min_bytes
                or (full_is_enough and min_bytes > 0 and total > 0 and total >= limit)
                or failed
                or not readable
                or self._core.closing
                or trio.current_time() >= deadline
            ):
                return parts
            with trio.move_on_at(deadline):
                await self._core.signals.wait(readable)

    def _read(
        self, wants: Sequence[FetchWant], limit: int, first_batch_whole: bool, accepts_zstd: bool
    ) -> tuple[list[Fetched], list[TopicPartition], int, bool]:
        broker = self._core.broker
        parts: list[Fetched] = []
        readable: list[TopicPartition] = []
        total = 0
        failed = False
        for want in wants:
            topic, partition = want.topic, want.partition
            if want.refused is not None:
                failed = True
                parts.append(Fetched(topic, partition, error=want.refused))
                continue
            room = min(max(want.max_bytes, 0), limit - total)
            if first_batch_whole and total == 0:
                room = max(room, 1)
            try:
                result = broker.fetch(topic, partition, want.offset, max(room, 0))
            except OffsetOutOfRangeError as exc:
                failed = True
                parts.append(
                    Fetched(
                        topic,
                        partition,
                        error=exc,
                        log_start_offset=exc.log_start_offset,
                        log_end_offset=exc.log_end_offset,
                    )
                )
                continue
            except LogbrokerError as exc:
                failed = True
                parts.append(Fetched(topic, partition, error=exc))
                continue
            readable.append((topic, partition))
            data = result.data
            error: LogbrokerError | None = None
            if data and not accepts_zstd and _has_zstd(data):
                failed = True
                error = UnsupportedCompressionError("zstd batches need Fetch v10 or later")
                data = b""
            parts.append(
                Fetched(
                    topic,
                    partition,
                    data,
                    error,
                    result.high_watermark,
                    result.log_start_offset,
                    result.log_end_offset,
                )
            )
            total += len(data)
        return parts, readable, total, failed


def _has_zstd(data: bytes) -> bool:
    return any(header.compression == Compression.ZSTD for header in iter_batches(data))

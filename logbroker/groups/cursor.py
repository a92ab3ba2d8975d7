"""Per (group, partition) delivery state of a native group: the cursor and what is in flight.

    log start          committed                     cursor                 log end
        |--- done ---------|=== in flight (delivered, ===|--- not yet delivered ---|
                           |    not yet committed)      |

- `committed`: everything below it is done (a cumulative ack); durable, in `__offsets`.
- `cursor`: the next offset to deliver. Records in [committed, cursor) are in flight.
- Each delivery of a range is remembered with its time; when the oldest in-flight delivery is
  older than the ack timeout, the cursor rewinds to `committed` and those records go out again.
- A nack of offset X rewinds the cursor to X (at once, or when its delay ends; the partition
  delivers nothing meanwhile, so order is kept).
- Delivery counts are kept per offset as ranges. A nack of X voids the latest delivery of the
  records after X (the consumer stopped at X), so only X's count grows for X's failures.

Nothing here does I/O or reads a clock: times are monotonic milliseconds passed in.
"""

from __future__ import annotations

from collections import deque

import attrs

__all__ = ["DeliveryCounts", "PartitionCursor"]


class DeliveryCounts:
    """How many times each offset at or past `committed` has been delivered, as ranges."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []  # [start, end, count], sorted, not overlapping

    def count(self, offset: int) -> int:
        for start, end, count in self.ranges:
            if start <= offset < end:
                return count
            if start > offset:
                break
        return 0

    def deliver(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Count one more delivery of [start, end); return that range's counts, as ranges."""
        self._split(start)
        self._split(end)
        result: list[tuple[int, int, int]] = []
        merged: list[list[int]] = []
        position = start
        for rng in self.ranges:
            if rng[1] <= start or rng[0] >= end:
                merged.append(rng)
                continue
            if rng[0] > position:  # a gap never delivered before
                merged.append([position, rng[0], 1])
                result.append((position, rng[0], 1))
            rng[2] += 1
            merged.append(rng)
            result.append((rng[0], rng[1], rng[2]))
            position = rng[1]
        if position < end:
            merged.append([position, end, 1])
            result.append((position, end, 1))
        merged.sort()
        self.ranges = merged
        self._merge()
        return result

    def void(self, start: int, end: int) -> None:
        """Forget the latest delivery of [start, end) (the consumer never got to those records)."""
        self._split(start)
        self._split(end)
        for rng in self.ranges:
            if rng[0] >= start and rng[1] <= end:
                rng[2] -= 1
        self.ranges = [r for r in self.ranges if r[2] > 0]
        self._merge()

    def drop_below(self, offset: int) -> None:
        self._split(offset)
        self.ranges = [r for r in self.ranges if r[0] >= offset]

    def first_reaching(self, start: int, end: int, limit: int) -> int | None:
        """The first offset in [start, end) already delivered `limit` times, or None."""
        for rng_start, rng_end, count in self.ranges:
            if rng_end <= start:
                continue
            if rng_start >= end:
                break
            if count >= limit:
                return max(rng_start, start)
        return None

    def _split(self, at: int) -> None:
        for i, (start, end, count) in enumerate(self.ranges):
            if start < at < end:
                self.ranges[i : i + 1] = [[start, at, count], [at, end, count]]
                return

    def _merge(self) -> None:
        merged: list[list[int]] = []
        for rng in self.ranges:
            if merged and merged[-1][1] == rng[0] and merged[-1][2] == rng[2]:
                merged[-1][1] = rng[1]
            else:
                merged.append(rng)
        self.ranges = merged


@attrs.define
class PartitionCursor:
    """The delivery state of one partition for one group (see the module docstring)."""

    topic: str
    partition: int
    committed: int
    cursor: int
    counts: DeliveryCounts = attrs.Factory(DeliveryCounts)
    #: Ranges delivered and not yet committed: (start, end, delivered_at).
    in_flight: deque[tuple[int, int, int]] = attrs.Factory(deque)
    #: A nack's delay: nothing is delivered before this time.
    paused_until: int = 0
    owner: str | None = None
    #: The offset being copied to the dead-letter topic; nothing is delivered meanwhile.
    dead_lettering: int | None = None
    #: The end of what the current owner was ever sent: it may commit up to here, even after an
    #: ack timeout rewound the cursor (it did process those records, only late).
    delivered_end: int = 0

    @property
    def in_flight_count(self) -> int:
        return self.cursor - self.committed

    def deliverable(self, now: int) -> bool:
        return self.owner is not None and now >= self.paused_until

    def ack_deadline(self, ack_timeout_ms: int) -> int | None:
        return self.in_flight[0][2] + ack_timeout_ms if self.in_flight else None

    def record_delivery(self, start: int, end: int, now: int) -> list[tuple[int, int, int]]:
        """[start, end) went out; returns its delivery counts as ranges."""
        self.cursor = end
        self.delivered_end = max(self.delivered_end, end)
        self.in_flight.append((start, end, now))
        return self.counts.deliver(start, end)

    def commit(self, offset: int) -> None:
        """Everything below `offset` is done (never moves back)."""
        if offset <= self.committed:
            return
        self.committed = offset
        self.cursor = max(self.cursor, offset)
        self.counts.drop_below(offset)
        while self.in_flight and self.in_flight[0][1] <= offset:
            self.in_flight.popleft()
        if self.in_flight and self.in_flight[0][0] < offset:
            _, end, at = self.in_flight.popleft()
            self.in_flight.appendleft((offset, end, at))

    def give_to(self, owner: str | None) -> None:
        """A new owner: what was in flight goes out again, to it (counted)."""
        self.rewind(self.committed)
        self.owner = owner
        self.delivered_end = self.committed

    def rewind(self, to: int) -> None:
        """Deliver again from `to` (a nack, an ack timeout, a new owner)."""
        to = max(to, self.committed)
        if to < self.cursor:
            self.cursor = to
            kept: deque[tuple[int, int, int]] = deque()
            for start, end, at in self.in_flight:
                if start < to:
                    kept.append((start, min(end, to), at))
            self.in_flight = kept

    def nack(self, offset: int, resume_at: int, *, release: bool = False) -> None:
        """The consumer failed at `offset`: redeliver from it once `resume_at` comes. With
        `release` it never processed `offset` either: no delivery from it on counts."""
        self.counts.void(offset if release else offset + 1, self.cursor)
        if release:
            self.delivered_end = min(self.delivered_end, offset)
        self.rewind(offset)
        self.paused_until = max(self.paused_until, resume_at)

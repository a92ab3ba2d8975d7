"""A history checker for a log broker, in the manner of Jepsen's queue checkers.

Every produce attempt is recorded with its payload ids and its outcome: `ok` with the offset the
broker acked, `failed` (the broker refused it: nothing was stored), or `unknown` (the connection
was lost or the ack timed out: stored or not). Every record a consumer read is recorded too.
After the run the whole log is read back, and `check` compares the three:

- lost: acked, but not in the log (or not at the offset it was acked at: misplaced);
- duplicated: one payload at two offsets (no attempt is ever retried under the same payload id);
- phantom: in the log, or read by a consumer, but never attempted, or attempted and refused;
  a consumer read of an offset whose payload differs from the log's;
- reordered: one producer's acked records of one partition in another order in the log;
- gaps: offsets of a partition not contiguous from its log start to its end;
- unconsumed: acked, but never read by the consumer (when the run expects it to read everything).

Payload ids are `<producer>-<seq>` with seq counting up per producer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
import trio

import logbroker
from logbroker.errors import BrokerUnavailableError, LogbrokerError, RequestTimedOutError, StorageError

__all__ = ["Attempt", "History", "Outcome", "Report", "check", "committed_went_back", "produce", "read_back"]

OK = "ok"
FAILED = "failed"
UNKNOWN = "unknown"


@attrs.define
class Outcome:
    """What a campaign found: its violations (none: it passed)."""

    violations: list[str] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def verdict(self) -> str:
        return "no violations" if self.ok else f"VIOLATIONS: {self.violations[:5]}"


@attrs.define
class Attempt:
    producer: str
    partition: int
    payloads: list[bytes]
    outcome: str = UNKNOWN
    #: The offset of the first payload, when acked.
    offset: int | None = None
    #: When the ack came (trio time), for campaigns whose promise depends on it.
    acked_at: float | None = None


@attrs.define
class Read:
    partition: int
    offset: int
    payload: bytes


@attrs.define
class History:
    attempts: list[Attempt] = attrs.Factory(list)
    reads: list[Read] = attrs.Factory(list)
    #: The next sequence number of each producer's payload ids.
    sequences: dict[str, int] = attrs.Factory(dict)

    def attempt(self, producer: str, partition: int, payloads: list[bytes]) -> Attempt:
        attempt = Attempt(producer, partition, payloads)
        self.attempts.append(attempt)
        return attempt

    def next_attempt(self, producer: str, partition: int, records: int) -> Attempt:
        """An attempt of `records` fresh payload ids of `producer`."""
        first = self.sequences.get(producer, 0)
        self.sequences[producer] = first + records
        return self.attempt(
            producer, partition, [f"{producer}-{n}".encode() for n in range(first, first + records)]
        )

    def read(self, partition: int, offset: int, payload: bytes) -> None:
        self.reads.append(Read(partition, offset, payload))


@attrs.define
class Report:
    attempted: int = 0
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    in_log: int = 0
    consumed: int = 0
    lost: list[bytes] = attrs.Factory(list)
    misplaced: list[str] = attrs.Factory(list)
    duplicated: list[bytes] = attrs.Factory(list)
    phantom: list[str] = attrs.Factory(list)
    reordered: list[str] = attrs.Factory(list)
    gaps: list[str] = attrs.Factory(list)
    unconsumed: list[bytes] = attrs.Factory(list)

    @property
    def violations(self) -> dict[str, list[object]]:
        kinds = ("lost", "misplaced", "duplicated", "phantom", "reordered", "gaps", "unconsumed")
        return {kind: list(getattr(self, kind)) for kind in kinds if getattr(self, kind)}

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        counts = (
            f"{self.attempted} records attempted: {self.acked} acked, {self.failed} refused, "
            f"{self.unknown} unknown; {self.in_log} in the log; {self.consumed} reads"
        )
        if self.ok:
            return f"{counts}; no violations"
        found = "; ".join(
            f"{kind} {len(items)} (e.g. {items[:3]})" for kind, items in self.violations.items()
        )
        return f"{counts}; VIOLATIONS: {found}"


def check(
    history: History,
    log: Mapping[int, Iterable[tuple[int, bytes]]],
    *,
    log_start: Mapping[int, int] | None = None,
    expect_consumed: bool = True,
) -> Report:
    """Check `history` against `log`: partition -> (offset, payload) in offset order, as read
    back from the start of each partition (`log_start`, default 0) to its end."""
    report = Report()
    where: dict[bytes, list[tuple[int, int]]] = {}
    at: dict[tuple[int, int], bytes] = {}
    for partition, records in sorted(log.items()):
        expected = (log_start or {}).get(partition, 0)
        for offset, payload in records:
            if offset != expected:
                report.gaps.append(f"partition {partition}: offset {offset} where {expected} was next")
            expected = offset + 1
            where.setdefault(payload, []).append((partition, offset))
            at[(partition, offset)] = payload
            report.in_log += 1
    report.duplicated = sorted(payload for payload, places in where.items() if len(places) > 1)

    attempted: dict[bytes, Attempt] = {}
    for attempt in history.attempts:
        for payload in attempt.payloads:
            attempted[payload] = attempt
        report.attempted += len(attempt.payloads)
        if attempt.outcome == OK:
            report.acked += len(attempt.payloads)
        elif attempt.outcome == FAILED:
            report.failed += len(attempt.payloads)
        else:
            report.unknown += len(attempt.payloads)

    for payload, places in sorted(where.items()):
        source = attempted.get(payload)
        if source is None or source.outcome == FAILED:
            why = "never attempted" if source is None else "refused by the broker"
            report.phantom.append(f"{payload!r} at {places[0]}: {why}")

    consumed: set[bytes] = set()
    for read in history.reads:
        report.consumed += 1
        consumed.add(read.payload)
        stored = at.get((read.partition, read.offset))
        if stored != read.payload:
            report.phantom.append(
                f"read {read.payload!r} at {(read.partition, read.offset)}, where the log has {stored!r}"
            )

    last: dict[tuple[str, int], int] = {}  # (producer, partition) -> where its last acked record is
    for attempt in history.attempts:
        if attempt.outcome != OK:
            continue
        assert attempt.offset is not None
        for i, payload in enumerate(attempt.payloads):
            acked_at = (attempt.partition, attempt.offset + i)
            placed = where.get(payload)
            if not placed:
                report.lost.append(payload)
                continue
            if acked_at not in placed:
                report.misplaced.append(f"{payload!r} acked at {acked_at}, found at {placed}")
            found = min((o for p, o in placed if p == attempt.partition), default=None)
            key = (attempt.producer, attempt.partition)
            if found is not None:
                if key in last and found <= last[key]:
                    report.reordered.append(f"{payload!r} at offset {found}, after offset {last[key]}")
                last[key] = found
            if expect_consumed and payload not in consumed:
                report.unconsumed.append(payload)
    return report


def committed_went_back(snapshots: Iterable[Mapping[int, int]]) -> list[str]:
    """Where a group's committed offsets (partition -> offset, in the order observed) moved back."""
    highest: dict[int, int] = {}
    found: list[str] = []
    for n, snapshot in enumerate(snapshots):
        for partition, offset in sorted(snapshot.items()):
            if offset < highest.get(partition, -1):
                found.append(f"partition {partition}: {highest[partition]} then {offset} (snapshot {n})")
            highest[partition] = max(offset, highest.get(partition, -1))
    return found


async def produce(client: logbroker.Client, topic: str, attempt: Attempt) -> bool:
    """Send `attempt` as one batch and record its outcome. False when the connection or the ack
    was lost (the outcome stays unknown: stored or not)."""
    try:
        with trio.fail_after(10):
            attempt.offset = await client.produce(
                topic, attempt.payloads, partition=attempt.partition, broker_timeout=5
            )
    except (BrokerUnavailableError, RequestTimedOutError, StorageError, trio.TooSlowError):
        return False
    except LogbrokerError:
        attempt.outcome = FAILED  # the broker refused the batch: nothing was stored
        return True
    attempt.outcome = OK
    attempt.acked_at = trio.current_time()
    return True


async def read_back(
    client: logbroker.Client, topic: str, partitions: int
) -> tuple[dict[int, list[tuple[int, bytes]]], dict[int, int]]:
    """Every record of `topic` as (offset, value) per partition, from each partition's log
    start to its end; and the log starts (what `check` takes)."""
    records: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    start = {p: await client.list_offset(topic, p, "earliest") or 0 for p in range(partitions)}
    end = {p: await client.list_offset(topic, p, "latest") or 0 for p in range(partitions)}
    left = sum(end[p] - start[p] for p in range(partitions))
    if left:
        async for message in client.consumer(topic, start="earliest"):
            if message.offset < end[message.partition]:
                records[message.partition].append((message.offset, message.value or b""))
                left -= 1
            if left == 0:
                break
    return records, start

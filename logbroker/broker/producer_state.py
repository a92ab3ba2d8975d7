"""Idempotent producers: per-partition producer state, its snapshots, and producer-id allocation.

Kafka's idempotent producers stamp every batch with a producer id, an epoch and the sequence number
of its first record (`BatchHeader.producer_id`, `producer_epoch`, `base_sequence`); the sequence of
the last record is `base_sequence + last_offset_delta`, wrapping from 2**31 - 1 to 0. For each
partition a `ProducerStateTable` keeps, per producer id, the epoch and what the last five batches
were (first and last sequence, base and last offset, max timestamp), and applies the rules of
Kafka's `ProducerStateManager` to every batch before it is appended:

    producer id < 0                      no checks: a plain producer
    unknown producer id                  any sequence is accepted; the state starts from it
    epoch below the known one            InvalidProducerEpochError (47): a newer instance fenced it
    epoch above the known one            base sequence 0 starts the epoch; else OutOfOrderSequenceError (45)
    same epoch, base = last + 1          appended
    same epoch, (first, last sequence)   a duplicate (a retry of a batch already stored): nothing is
      equal to one of the last five      appended, the answer carries the original offsets
    anything else                        OutOfOrderSequenceError (45)

The check is per batch, never per record: everything it needs is in the 61-byte header.

Snapshot (`producer-state.json` in the partition directory, replaced atomically), the state of
every batch below `offset`:

    {"version": 1, "offset": 1234,
     "producers": [{"id": 7, "epoch": 0, "last_append_ms": 1767225600000,
                    "batches": [[first_seq, last_seq, base_offset, last_offset, max_timestamp], ...]}]}

When a partition is opened, `load_producer_state` takes the snapshot if it is readable and not
beyond the log end, then walks the batch headers from its offset to the log end (from the log start
without a usable snapshot). A snapshot beyond the log end (recovery cut the tail it described) is
deleted, so it cannot be trusted later once the log has grown past it again with other batches.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from logbroker.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    StorageError,
)
from logbroker.records.batch import BatchHeader
from logbroker.storage.fs import FileSystem, write_atomic
from logbroker.storage.log import PartitionLog
from logbroker.storage.partition_dir import MAX_PRODUCER_STATE_BYTES, PRODUCER_STATE_FILE

__all__ = [
    "BATCHES_KEPT",
    "PRODUCER_ID_BLOCK",
    "PRODUCER_ID_EXPIRATION_MS",
    "PRODUCER_ID_FILE",
    "BatchMetadata",
    "Duplicate",
    "ProducerEntry",
    "ProducerIdAllocator",
    "ProducerStateTable",
    "SnapshotError",
    "load_producer_state",
    "save_producer_state",
]

#: Batches remembered per producer for duplicate detection (Kafka's NUM_BATCHES_TO_RETAIN; its
#: clients keep at most five requests in flight per partition, so a retry is one of these).
BATCHES_KEPT = 5
#: A producer whose last append is older than this is forgotten when the state is snapshotted.
#: Kafka's producer.id.expiration.ms defaults to one day; a week gives slow producers more room.
PRODUCER_ID_EXPIRATION_MS = 7 * 24 * 60 * 60 * 1000
#: Producer ids reserved per durable write of `PRODUCER_ID_FILE`.
PRODUCER_ID_BLOCK = 1000
#: In the data directory: the first producer id not yet reserved.
PRODUCER_ID_FILE = "producer-ids.json"

MAX_SEQUENCE = (1 << 31) - 1
MAX_INT64 = (1 << 63) - 1
NO_PRODUCER_EPOCH = -1
_SNAPSHOT_VERSION = 1


class BatchMetadata(NamedTuple):
    """What the state remembers of one appended batch."""

    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    max_timestamp: int


class Duplicate(NamedTuple):
    """Every batch of a produce was stored before, at these offsets."""

    base_offset: int
    next_offset: int


@attrs.define
class ProducerEntry:
    """One producer id's state in one partition."""

    producer_id: int
    epoch: int
    #: The last `BATCHES_KEPT` batches of this epoch, oldest first.
    batches: deque[BatchMetadata]
    #: Broker time of the last append; for batches replayed from the log, their max timestamp.
    last_append_ms: int

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence

    def find_duplicate(self, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        for kept in self.batches:
            if kept.first_sequence == first_sequence and kept.last_sequence == last_sequence:
                return kept
        return None


def last_sequence(header: BatchHeader) -> int:
    """The sequence of the batch's last record (Kafka's `DefaultRecordBatch.incrementSequence`)."""
    return (header.base_sequence + header.last_offset_delta) & MAX_SEQUENCE


class SnapshotError(ValueError):
    """A snapshot that does not read as one."""


class ProducerStateTable:
    """The idempotent-producer state of one partition, in memory."""

    def __init__(self, name: str) -> None:
        #: Which partition this is, for messages.
        self.name = name
        self._producers: dict[int, ProducerEntry] = {}
        #: The offset of the snapshot on disk this state started from or was last written to.
        self.snapshot_offset: int | None = None
        # Appends move the log end past the snapshot; only expiry changes the state without that.
        self._expired = False

    @property
    def producers(self) -> Mapping[int, ProducerEntry]:
        return self._producers

    # -- produce -------------------------------------------------------------------------------

    def check(self, headers: Sequence[BatchHeader]) -> Duplicate | None:
        """Apply the idempotence rules to the batches of one produce, in order, without changing
        the state. None: append them, then call `record`. A `Duplicate`: every batch was stored
        before; append nothing. Raises `OutOfOrderSequenceError`, `InvalidProducerEpochError`, or
        `InvalidRecordError` for a produce that mixes duplicates with new batches.
        """
        duplicates: list[BatchMetadata] = []
        # (epoch, last sequence) after the batches of this produce checked so far.
        pending: dict[int, tuple[int, int]] = {}
        fresh = 0
        for header in headers:
            producer_id = header.producer_id
            if producer_id < 0:
                fresh += 1
                continue
            epoch = header.producer_epoch
            known = pending.get(producer_id)
            if known is None:
                entry = self._producers.get(producer_id)
                if entry is not None:
                    if epoch == entry.epoch:
                        duplicate = entry.find_duplicate(header.base_sequence, last_sequence(header))
                        if duplicate is not None:
                            duplicates.append(duplicate)
                            continue
                    known = (entry.epoch, entry.last_sequence)
            if known is not None:
                self._check_sequence(producer_id, known, epoch, header.base_sequence)
            pending[producer_id] = (epoch, last_sequence(header))
            fresh += 1
        if not duplicates:
            return None
        if fresh:
            raise InvalidRecordError(
                f"{self.name}: {len(duplicates)} of the {len(headers)} batches were stored before "
                f"(retries) and the others are new; send retried batches in a produce of their own"
            )
        return Duplicate(duplicates[0].base_offset, duplicates[-1].last_offset + 1)

    def _check_sequence(self, producer_id: int, known: tuple[int, int], epoch: int, sequence: int) -> None:
        known_epoch, known_last = known
        if epoch < known_epoch:
            raise InvalidProducerEpochError(
                f"{self.name}: producer {producer_id} sent epoch {epoch}, but epoch {known_epoch} "
                "has fenced it (a newer instance of the producer took over its id)"
            )
        if known_epoch == NO_PRODUCER_EPOCH:
            return  # as Kafka: without a known epoch any sequence is accepted
        if epoch > known_epoch:
            if sequence != 0:
                raise OutOfOrderSequenceError(
                    f"{self.name}: producer {producer_id} starts epoch {epoch} at sequence {sequence}; "
                    "a new epoch starts at sequence 0"
                )
            return
        expected = (known_last + 1) & MAX_SEQUENCE
        if sequence != expected:
            raise OutOfOrderSequenceError(
                f"{self.name}: producer {producer_id} (epoch {epoch}) sent sequence {sequence} where "
                f"{expected} comes next: a batch in between is missing, or this one is a retry older "
                f"than the last {BATCHES_KEPT} batches the broker remembers"
            )

    def record(self, headers: Sequence[BatchHeader], base_offset: int, now_ms: int) -> None:
        """The batches `check` passed were appended from `base_offset` on: remember them."""
        offset = base_offset
        for header in headers:
            if header.producer_id >= 0:
                self._apply(header, offset, now_ms)
            offset += header.records_count

    def replay(self, header: BatchHeader, now_ms: int) -> None:
        """Bring the state up to date with a stored batch (stamped header), without checks."""
        if header.producer_id < 0 or header.is_control:
            return
        # The broker's append time is not stored: the batch's own timestamp stands in for it,
        # capped at now so a producer's clock cannot keep its state forever.
        when = min(header.max_timestamp, now_ms) if header.max_timestamp >= 0 else now_ms
        self._apply(header, header.base_offset, when)

    def _apply(self, header: BatchHeader, offset: int, when_ms: int) -> None:
        producer_id = header.producer_id
        epoch = header.producer_epoch
        entry = self._producers.get(producer_id)
        if entry is None:
            entry = ProducerEntry(producer_id, epoch, deque(maxlen=BATCHES_KEPT), when_ms)
            self._producers[producer_id] = entry
        elif entry.epoch != epoch:
            entry.epoch = epoch  # a new epoch: the batches of the old one no longer count
            entry.batches.clear()
        entry.batches.append(
            BatchMetadata(
                header.base_sequence,
                last_sequence(header),
                offset,
                offset + header.last_offset_delta,
                header.max_timestamp,
            )
        )
        entry.last_append_ms = max(entry.last_append_ms, when_ms)

    # -- upkeep --------------------------------------------------------------------------------

    def expire(self, now_ms: int) -> int:
        """Forget producers whose last append is older than `PRODUCER_ID_EXPIRATION_MS`."""
        horizon = now_ms - PRODUCER_ID_EXPIRATION_MS
        expired = [pid for pid, entry in self._producers.items() if entry.last_append_ms < horizon]
        for producer_id in expired:
            del self._producers[producer_id]
        if expired:
            self._expired = True
        return len(expired)

    def needs_snapshot(self, end_offset: int) -> bool:
        """Whether the snapshot on disk (if any) is behind a log ending at `end_offset`."""
        return self._expired or self.snapshot_offset != end_offset

    def snapshot(self, offset: int) -> bytes:
        """The state as snapshot bytes, for a log whose end is `offset`."""
        producers = [
            {
                "id": entry.producer_id,
                "epoch": entry.epoch,
                "last_append_ms": entry.last_append_ms,
                "batches": [list(kept) for kept in entry.batches],
            }
            for entry in self._producers.values()
        ]
        document = {"version": _SNAPSHOT_VERSION, "offset": offset, "producers": producers}
        return json.dumps(document, separators=(",", ":")).encode()

    def snapshot_written(self, offset: int) -> None:
        self.snapshot_offset = offset
        self._expired = False

    @classmethod
    def from_snapshot(cls, name: str, data: bytes) -> ProducerStateTable:
        """The state a snapshot holds (its `snapshot_offset` set); raises `SnapshotError`."""
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise SnapshotError(f"not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("version") != _SNAPSHOT_VERSION:
            raise SnapshotError(f"not a version {_SNAPSHOT_VERSION} snapshot")
        offset = _int(document.get("offset"), 0, MAX_INT64, "offset")
        producers = document.get("producers")
        if not isinstance(producers, list):
            raise SnapshotError("no list of producers")
        table = cls(name)
        for item in producers:
            if not isinstance(item, dict):
                raise SnapshotError("a producer is not an object")
            producer_id = _int(item.get("id"), 0, MAX_INT64, "producer id")
            if producer_id in table._producers:
                raise SnapshotError(f"producer {producer_id} appears twice")
            epoch = _int(item.get("epoch"), -(1 << 15), (1 << 15) - 1, "epoch")
            last_append_ms = _int(item.get("last_append_ms"), -MAX_INT64, MAX_INT64, "last_append_ms")
            batches = item.get("batches")
            if not isinstance(batches, list) or not 1 <= len(batches) <= BATCHES_KEPT:
                raise SnapshotError(f"producer {producer_id}: 1 to {BATCHES_KEPT} batches expected")
            kept: deque[BatchMetadata] = deque(maxlen=BATCHES_KEPT)
            for fields in batches:
                if not isinstance(fields, list) or len(fields) != 5:
                    raise SnapshotError(f"producer {producer_id}: a batch is not 5 numbers")
                first, last = (_int(f, 0, MAX_SEQUENCE, "sequence") for f in fields[:2])
                base = _int(fields[2], 0, offset - 1, "base offset")
                last_offset = _int(fields[3], base, offset - 1, "last offset")
                max_timestamp = _int(fields[4], -MAX_INT64, MAX_INT64, "timestamp")
                kept.append(BatchMetadata(first, last, base, last_offset, max_timestamp))
            table._producers[producer_id] = ProducerEntry(producer_id, epoch, kept, last_append_ms)
        table.snapshot_offset = offset
        return table


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise SnapshotError(f"{what} {value!r} is not an integer from {low} to {high}")
    return value


# -- files ---------------------------------------------------------------------------------------


def load_producer_state(
    fs: FileSystem, directory: str, log: PartitionLog, name: str, now_ms: int
) -> tuple[ProducerStateTable, list[str]]:
    """Rebuild a partition's producer state: its snapshot, then the batch headers after it.

    Returns the state and notes for the recovery report. Raises `StorageError` if the files
    cannot be read or a stale snapshot cannot be removed.
    """
    path = os.path.join(directory, PRODUCER_STATE_FILE)
    notes: list[str] = []
    table: ProducerStateTable | None = None
    end = log.next_offset
    try:
        try:
            size: int | None = fs.file_size(path)
        except FileNotFoundError:
            size = None
        if size is not None:
            problem = None
            if size > MAX_PRODUCER_STATE_BYTES:
                problem = f"{size} bytes is more than a snapshot may take ({MAX_PRODUCER_STATE_BYTES})"
            else:
                try:
                    table = ProducerStateTable.from_snapshot(name, fs.read_file(path))
                except SnapshotError as exc:
                    problem = f"unreadable ({exc})"
            if table is not None and (table.snapshot_offset or 0) > end:
                problem = (
                    f"it is at offset {table.snapshot_offset}, past the log end {end} "
                    "(recovery cut the batches it describes)"
                )
                table = None
            if problem is not None:
                notes.append(f"{PRODUCER_STATE_FILE} ignored and removed: {problem}")
                fs.unlink(path)
                fs.fsync_dir(directory)
    except OSError as exc:
        raise StorageError(f"{path}: cannot load the producer state: {exc.strerror or exc}") from exc
    if table is None:
        table = ProducerStateTable(name)
        start, origin = log.log_start_offset, "the log start"
    else:
        start = max(log.log_start_offset, table.snapshot_offset or 0)
        origin = f"the snapshot at offset {table.snapshot_offset}"
    replayed = 0
    for header in log.batch_headers(start):
        table.replay(header, now_ms)
        replayed += 1
    if replayed:
        notes.append(f"producer state: {replayed} batch header(s) from {origin} replayed")
    return table, notes


def save_producer_state(fs: FileSystem, directory: str, table: ProducerStateTable, offset: int) -> None:
    """Write the snapshot of `table` for a log ending at `offset` (atomically, fsynced)."""
    path = os.path.join(directory, PRODUCER_STATE_FILE)
    try:
        write_atomic(fs, path, table.snapshot(offset))
    except OSError as exc:
        raise StorageError(f"{path}: cannot write the producer state: {exc.strerror or exc}") from exc
    table.snapshot_written(offset)


class ProducerIdAllocator:
    """Hands out producer ids, each once, also across restarts and crashes.

    File brokers reserve ids in blocks: before the first id of a block is handed out, the end of
    the block is written to `<data dir>/producer-ids.json` (atomically, fsynced), and a broker
    starts after the last block reserved, whatever part of it was used. A crash wastes the rest
    of a block and never repeats an id (Kafka's ProducerIdManager works the same way). Memory
    brokers just count. New ids start at epoch 0.
    """

    def __init__(self, fs: FileSystem | None, path: str | None) -> None:
        self._fs = fs
        self._path = path
        self._next: int | None = None if fs is not None else 0
        self._reserved_end = 0 if fs is not None else MAX_INT64 + 1

    def allocate(self) -> int:
        if self._next is None:
            self._next = self._reserved_end = self._load()
        if self._next >= self._reserved_end:
            self._reserve(self._next + PRODUCER_ID_BLOCK)
        if self._next > MAX_INT64:
            raise StorageError("every producer id has been handed out")
        producer_id = self._next
        self._next += 1
        return producer_id

    def _load(self) -> int:
        assert self._fs is not None
        assert self._path is not None
        try:
            data = self._fs.read_file(self._path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"{self._path}: cannot read: {exc.strerror or exc}") from exc
        try:
            document = json.loads(data)
            if document.get("version") != 1:
                raise ValueError("not version 1")
            return _int(document.get("next"), 0, MAX_INT64 + 1, "next")
        except (ValueError, AttributeError, RecursionError) as exc:
            raise StorageError(
                f"{self._path}: unreadable ({exc}); no producer id is handed out, since one could "
                "repeat an id handed out before"
            ) from None

    def _reserve(self, end: int) -> None:
        assert self._fs is not None
        assert self._path is not None
        try:
            write_atomic(self._fs, self._path, json.dumps({"version": 1, "next": end}).encode())
        except OSError as exc:
            raise StorageError(f"{self._path}: cannot reserve producer ids: {exc.strerror or exc}") from exc
        self._reserved_end = end

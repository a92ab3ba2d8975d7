"""Dead letters: a record delivered `max_deliveries` times without an ack is copied to the
group's dead-letter topic (`dlq.<group>.<topic>`, an ordinary topic) and committed past.

The copy keeps the record's key, value, headers and timestamp and adds headers naming its origin
(`dlq.topic`, `dlq.partition`, `dlq.offset`, `dlq.group`, `dlq.delivery_count`, `dlq.reason`);
a keyed record lands on the partition Kafka's partitioner picks for its key. These are the only
records the broker decodes on a group's delivery path.

The order of writes makes a crash harmless: first a marker in `__offsets` (the committed offset
with `dead_letter: {offset, partition, from}`), then the copy; once the copy is durable the
commit past the record replaces the marker (`finish`). A restart that finds a marker looks for
the copy from `from` on (`was_copied`) and commits past the record if it is there, so a record is
never lost and, in that window, never copied twice. While the copy is being made the partition
delivers nothing (`PartitionCursor.dead_lettering`), so order is kept.
"""

from __future__ import annotations

from typing import Any

import attrs

from logbroker.broker.broker import Broker, Durable
from logbroker.broker.names import dead_letter_topic
from logbroker.errors import CorruptRecordError, LogbrokerError
from logbroker.groups.cursor import PartitionCursor
from logbroker.groups.membership import Group
from logbroker.groups.offsets_store import OffsetsStore
from logbroker.records import iter_records
from logbroker.records.codec import decode_batch, encode_batch
from logbroker.records.partitioner import partition_for_key
from logbroker.storage.log import PartitionLog

__all__ = ["DeadLetter", "DeadLetters"]


@attrs.frozen
class DeadLetter:
    """A record copied to its dead-letter topic; once the copy is durable, `finish` it."""

    group: str
    topic: str
    partition: int
    offset: int
    copy: Durable


class DeadLetters:
    def __init__(self, broker: Broker, groups: dict[str, Group], store: OffsetsStore) -> None:
        self._broker = broker
        self._groups = groups
        self._store = store

    def copy(self, group: Group, state: PartitionCursor, log: PartitionLog, now_ms: int) -> DeadLetter:
        """Copy the record at the partition's cursor to the group's dead-letter topic."""
        offset = state.cursor
        count = state.counts.count(offset)
        reason = f"delivered {count} times without an ack (max deliveries {group.settings.max_deliveries})"
        name = dead_letter_topic(group.name, state.topic)
        if not self._broker.has_topic(name):
            self._broker.create_topic(name, now_ms=now_ms)
        data = log.read(offset, 1)
        key: bytes | None = None
        value: bytes | None = None
        headers: list[tuple[str, bytes | None]] = []
        timestamp = now_ms
        try:
            _, records = decode_batch(data)
            record = next(r for r in records if r.offset == offset)
            key, value, timestamp = record.key, record.value, record.timestamp
            headers = list(record.headers)
        except (CorruptRecordError, StopIteration) as exc:
            reason += f"; the record could not be decoded ({exc}), so only its origin is kept"
        headers += [
            ("dlq.topic", state.topic.encode()),
            ("dlq.partition", str(state.partition).encode()),
            ("dlq.offset", str(offset).encode()),
            ("dlq.group", group.name.encode()),
            ("dlq.delivery_count", str(count).encode()),
            ("dlq.reason", reason.encode()),
        ]
        partitions = self._broker.partition_count(name)
        target = partition_for_key(key, partitions) if key is not None else state.partition % partitions
        batch = encode_batch([value], keys=[key], headers=[headers], timestamps=[max(timestamp, 0)])
        dlq_log = self._broker.log(name, target)
        marker = {"offset": offset, "partition": target, "from": dlq_log.next_offset}
        self._store.write(
            [
                (
                    OffsetsStore.offset_key(group.name, state.topic, state.partition),
                    {"offset": offset, "dead_letter": marker},
                )
            ],
            now_ms,
        )
        dlq_log.append(batch, now_ms)
        self._broker.note_appended(name, target)
        state.dead_lettering = offset
        return DeadLetter(
            group.name, state.topic, state.partition, offset, Durable(name, target, dlq_log.next_offset)
        )

    def finish(self, letter: DeadLetter, *, now_ms: int) -> Durable | None:
        """The copy is durable: commit past the original record."""
        state = self._cursor(letter)
        if state is None or state.dead_lettering != letter.offset:
            return None
        state.dead_lettering = None
        committed = max(state.committed, letter.offset + 1)
        durable = self._store.write(
            [(OffsetsStore.offset_key(letter.group, letter.topic, letter.partition), {"offset": committed})],
            now_ms,
        )
        state.commit(committed)
        return durable

    def abandon(self, letter: DeadLetter) -> None:
        """The copy could not be made durable: leave the record where it is (tried again later)."""
        state = self._cursor(letter)
        if state is not None and state.dead_lettering == letter.offset:
            state.dead_lettering = None

    def was_copied(
        self, group: str, topic: str, partition: int, committed: int, marker: dict[str, Any]
    ) -> bool:
        """Whether the copy a dead-letter marker announced is in the dead-letter topic."""
        try:
            if int(marker["offset"]) != committed:
                return False
            log = self._broker.log(dead_letter_topic(group, topic), int(marker["partition"]))
            offset = max(int(marker["from"]), log.log_start_offset)
        except (KeyError, TypeError, ValueError, LogbrokerError):
            return False
        origin = {
            "dlq.topic": topic.encode(),
            "dlq.partition": str(partition).encode(),
            "dlq.offset": str(committed).encode(),
            "dlq.group": group.encode(),
        }
        try:
            while offset < log.next_offset:
                data, offset = log.read_batches(offset, 1 << 20)
                if not data:
                    break
                for record in iter_records(data):
                    headers = dict(record.headers)
                    if all(headers.get(k) == v for k, v in origin.items()):
                        return True
        except LogbrokerError:
            pass
        return False

    def _cursor(self, letter: DeadLetter) -> PartitionCursor | None:
        group = self._groups.get(letter.group)
        return group.partitions.get((letter.topic, letter.partition)) if group else None

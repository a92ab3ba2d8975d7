"""`__offsets`: committed offsets and group settings, as an internal log.

Each change is one record, appended like any other and made durable like any other (so commits
survive a crash exactly as records do). Keys and values are small JSON objects:

    key   {"kind": "offset", "group": G, "topic": T, "partition": P}   value {"offset": N}
                                                            or {"offset": N, "dead_letter": {...}}
    key   {"kind": "group", "group": G}                                value {group settings}

A `dead_letter` marker says the record at N is being copied to the dead-letter topic
`dlq.<group>.<topic>`, into partition "partition" at or after offset "from"; the commit past N
that follows the copy replaces it. A restart that finds the marker looks for the copy there, so a
crash between the copy and that commit does not copy the record twice.

A null value deletes the key. At start the log is replayed from its start; the last value of a
key wins. When the log holds many more records than live keys, it is compacted: the active
segment is rolled, the live values are written after it and made durable, and the log start moves
past the old segments, which are deleted. A crash at any point replays to the same state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from logbroker import failpoints
from logbroker.broker.broker import Broker, Durable
from logbroker.records import encode_batch, iter_records

__all__ = ["OFFSETS_TOPIC", "Changes", "Key", "OffsetsStore"]

OFFSETS_TOPIC = "__offsets"
OFFSETS_TOPIC_CONFIG = {"retention.ms": "-1", "segment.bytes": str(16 << 20)}
_BATCH = 500
_READ = 1 << 20

Key = tuple[str, ...]
#: Changes to write: (key, value), a None value deleting the key.
Changes = list[tuple[Key, dict[str, Any] | None]]


def _encode_key(key: Key) -> bytes:
    if key[0] == "offset":
        return json.dumps(
            {"kind": "offset", "group": key[1], "topic": key[2], "partition": int(key[3])}
        ).encode()
    return json.dumps({"kind": "group", "group": key[1]}).encode()


def _decode_key(raw: bytes) -> Key | None:
    try:
        fields = json.loads(raw)
        if fields["kind"] == "offset":
            return ("offset", str(fields["group"]), str(fields["topic"]), str(int(fields["partition"])))
        if fields["kind"] == "group":
            return ("group", str(fields["group"]))
    except (ValueError, KeyError, TypeError):
        pass
    return None


class OffsetsStore:
    """The live key -> value map of `__offsets`, mirrored in memory."""

    def __init__(self, broker: Broker, *, now_ms: int) -> None:
        if not broker.has_topic(OFFSETS_TOPIC):
            broker.create_topic(OFFSETS_TOPIC, 1, OFFSETS_TOPIC_CONFIG, now_ms=now_ms, internal_ok=True)
        self._broker = broker
        self.log = broker.log(OFFSETS_TOPIC, 0)
        self.live: dict[Key, dict[str, Any]] = {}
        self._since_compaction = 0
        self._replay()

    def _replay(self) -> None:
        offset = self.log.log_start_offset
        end = self.log.next_offset
        while offset < end:
            data, offset = self.log.read_batches(offset, _READ)
            if not data:
                break
            for record in iter_records(data):
                key = _decode_key(record.key or b"")
                if key is None:
                    continue
                self._since_compaction += 1
                if record.value is None:
                    self.live.pop(key, None)
                else:
                    try:
                        self.live[key] = json.loads(record.value)
                    except ValueError:
                        continue

    def offsets(self) -> Iterator[tuple[str, str, int, int, dict[str, Any] | None]]:
        """(group, topic, partition, committed, dead-letter marker or None) for every committed
        offset."""
        for key, value in self.live.items():
            if key[0] == "offset":
                marker = value.get("dead_letter")
                yield (
                    key[1],
                    key[2],
                    int(key[3]),
                    int(value["offset"]),
                    marker if isinstance(marker, dict) else None,
                )

    def groups(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, value in self.live.items():
            if key[0] == "group":
                yield key[1], value

    def write(self, changes: Changes, now_ms: int) -> Durable | None:
        """Append the changes as one batch; returns what must be durable before they count
        (None: there were none)."""
        if not changes:
            return None
        self._append(changes, now_ms)
        for key, value in changes:
            if value is None:
                self.live.pop(key, None)
            else:
                self.live[key] = value
        self._since_compaction += len(changes)
        self._broker.note_appended(OFFSETS_TOPIC, 0)
        return Durable(OFFSETS_TOPIC, 0, self.log.next_offset)

    @staticmethod
    def offset_key(group: str, topic: str, partition: int) -> Key:
        return ("offset", group, topic, str(partition))

    @staticmethod
    def group_key(group: str) -> Key:
        return ("group", group)

    def needs_compaction(self) -> bool:
        return self._since_compaction > max(1000, 4 * len(self.live))

    def compact(self, now_ms: int) -> None:
        """Rewrite the live values after a roll, make them durable, drop what came before."""
        self.log.roll(now_ms)
        start = self.log.next_offset
        entries = list(self.live.items())
        for i in range(0, len(entries), _BATCH):
            self._append(entries[i : i + _BATCH], now_ms)
        self.log.flush()
        failpoints.hit("compaction.after_rewrite")
        self.log.delete_before(start)
        self._since_compaction = len(entries)

    def _append(self, changes: Sequence[tuple[Key, dict[str, Any] | None]], now_ms: int) -> None:
        keys = [_encode_key(key) for key, _ in changes]
        values = [None if value is None else json.dumps(value).encode() for _, value in changes]
        self.log.append(encode_batch(values, keys=keys, timestamp=now_ms), now_ms)

"""Wake waiting requests when what they wait on changes: a partition has new visible data, or a
consumer group changed (a rebalance, a rewind, a nack's delay ended, a member left)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import trio

from logbroker.broker.broker import TopicPartition

__all__ = ["Signals"]


class Signals:
    def __init__(self) -> None:
        self._waiters: dict[Hashable, set[trio.Event]] = {}

    def notify_partition(self, topic: str, partition: int) -> None:
        """New data is visible in the partition: wake its waiters."""
        self._notify((topic, partition))

    def notify_group(self, group: str) -> None:
        self._notify(("group", group, None))

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for event in events:
                event.set()

    async def wait(self, partitions: Iterable[TopicPartition], groups: Iterable[str] = ()) -> None:
        """Wait until any of `partitions` or `groups` is notified (callers bound the wait with a
        cancel scope)."""
        event = trio.Event()
        keys: list[Hashable] = list(partitions)
        keys.extend(("group", g, None) for g in groups)
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        try:
            await event.wait()
        finally:
            for key in keys:
                events = self._waiters.get(key)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[key]

    def _notify(self, key: Hashable) -> None:
        for event in self._waiters.pop(key, ()):
            event.set()

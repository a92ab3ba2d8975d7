"""Wake waiting requests when something they wait on changes: a partition gets new visible data,
or a consumer group changes (a rebalance, a rewind, a nack's delay ends)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import trio

from logbroker.storage.log import PartitionLog

__all__ = ["DataSignals"]


class DataSignals:
    def __init__(self) -> None:
        self._waiters: dict[Hashable, set[trio.Event]] = {}

    def notify(self, log: PartitionLog) -> None:
        """New data is visible in `log`: wake its waiters."""
        self.notify_key(id(log))

    def notify_group(self, group: str) -> None:
        self.notify_key(("group", group))

    def notify_key(self, key: Hashable) -> None:
        for event in self._waiters.pop(key, ()):
            event.set()

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for event in events:
                event.set()

    async def wait(self, logs: Sequence[PartitionLog], groups: Sequence[str] = ()) -> None:
        """Wait until any of `logs` or `groups` is notified (callers bound the wait with a cancel
        scope)."""
        event = trio.Event()
        keys: list[Hashable] = [id(log) for log in logs]
        keys.extend(("group", g) for g in groups)
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

"""Wake long-polling fetches when data becomes visible in a partition they wait on."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from logbroker.storage.log import PartitionLog

__all__ = ["DataSignals"]


class DataSignals:
    def __init__(self) -> None:
        self._waiters: dict[int, set[trio.Event]] = {}

    def notify(self, log: PartitionLog) -> None:
        """New data is visible in `log` (or the broker is going away): wake its waiters."""
        for event in self._waiters.pop(id(log), ()):
            event.set()

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for events in waiters.values():
            for event in events:
                event.set()

    async def wait(self, logs: Sequence[PartitionLog]) -> None:
        """Wait until any of `logs` is notified (callers bound the wait with a cancel scope)."""
        event = trio.Event()
        keys = [id(log) for log in logs]
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

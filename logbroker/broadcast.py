"""`Broadcast`: wake every task waiting for "something changed", as many times as it changes.

A `trio.Event` fires once and cannot be cleared; a condition that changes again and again (a
flush round completed, a connection closed, output was sent, the group state moved) needs a
fresh event after each firing. This is that idiom, written once:

    changed = Broadcast()
    ...
    await changed.wait_until(lambda: len(connections) <= limit)   # a waiter
    ...
    changed.fire()                                                # whoever changed it

A task that starts waiting after a `fire` waits for the next one. Checking a condition and
then waiting has no gap in which a `fire` could be missed, since nothing else runs between the
two (trio switches tasks only at an `await`).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["Broadcast"]


class Broadcast:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        """Wake every task waiting now."""
        event, self._event = self._event, trio.Event()
        event.set()

    async def wait(self) -> None:
        """Wait for the next `fire`."""
        await self._event.wait()

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Return once `ready()` is true, checking it again after each `fire`."""
        while not ready():
            await self._event.wait()

"""SIGINT and SIGTERM for the commands that stream (`produce`, `consume`).

The first signal asks the command to finish: what runs inside `Interrupt.stoppable()` (reading
input, waiting for records) is cancelled, and the command winds down within its own bounds
(flush what was read, commit what was printed, leave the group; `Interrupt.wait()` tells it
when). A second signal cancels the rest at once. Either way the command then says what it
completed and exits 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM (DESIGN §7).

    interrupt = Interrupt()
    interrupt.run(main, ...)                 # main(interrupt, ...) is a trio function
    if interrupt.requested:
        ...report...; raise SystemExit(interrupt.exit_code)
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio

from .common import run_async

__all__ = ["Interrupt"]

T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    def __init__(self) -> None:
        #: The first signal received, if any.
        self.signal: int | None = None
        self._stoppable: set[trio.CancelScope] = set()
        self._came: trio.Event | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        assert self.signal is not None
        return 128 + self.signal

    @contextmanager
    def stoppable(self) -> Iterator[trio.CancelScope]:
        """A cancel scope the first signal cancels (at once, if it came already)."""
        with trio.CancelScope() as scope:
            if self.requested:
                scope.cancel()
            self._stoppable.add(scope)
            try:
                yield scope
            finally:
                self._stoppable.discard(scope)

    async def wait(self) -> None:
        """Return once the first signal came (for work that winds down its own way)."""
        assert self._came is not None, "use it inside Interrupt.run"
        await self._came.wait()

    async def unless_stopped(self, fn: Callable[..., Awaitable[T]], *args: object) -> T | None:
        """`await fn(*args)`, or None if a signal stops it (or came before)."""
        result = None
        with self.stoppable():
            result = await fn(*args)
        return result

    def run(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run `fn(self, *args)` under trio with the signals watched; its errors come out as
        themselves (`run_async`). A KeyboardInterrupt (a SIGINT before the watch began) counts
        as SIGINT."""
        try:
            run_async(self._main, fn, *args)
        except KeyboardInterrupt:
            self.signal = self.signal or signal.SIGINT

    async def _main(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self._came = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(self._watch, nursery.cancel_scope)
            await fn(self, *args)
            nursery.cancel_scope.cancel()

    async def _watch(self, everything: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(*_SIGNALS) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:
                    self.signal = signum
                    for scope in list(self._stoppable):
                        scope.cancel()
                    assert self._came is not None
                    self._came.set()
                else:
                    everything.cancel()
                    return

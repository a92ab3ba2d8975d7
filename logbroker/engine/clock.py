"""The engine's two clocks, read here and passed down: the broker core takes time as arguments.

`monotonic_ms` is trio's clock (timeouts: sessions, acks, long polls), so tests drive it with
`autojump_clock`; `wall_ms` is the wall clock (record timestamps, retention, roll).
"""

from __future__ import annotations

import time

import trio

__all__ = ["monotonic_ms", "wall_ms"]


def monotonic_ms() -> int:
    """trio's clock in whole milliseconds (rounded: a deadline slept until reads as reached)."""
    return round(trio.current_time() * 1000)


def wall_ms() -> int:
    return int(time.time() * 1000)

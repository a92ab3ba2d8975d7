"""Named failpoints: places inside multi-step operations where a test can make the broker stop,
to show that a restart finds the operation fully done or not done at all.

Nothing is armed in a normal run, and `hit` costs one truth test of an empty dict. A test arms a
point with `arm(name)` (in-process: it raises `FailpointCrash`, which nothing in the broker
catches, like a process dying there) or, for a `logbroker serve` subprocess, with the
environment variable `LOGBROKER_FAILPOINTS=name[@n][:exit],...`: the n-th time (default the
first) the process ends at once with status 137, as kill -9 would leave it.
"""

from __future__ import annotations

import os

__all__ = ["POINTS", "FailpointCrash", "arm", "disarm", "hit"]

#: Every point, with where it is.
POINTS = {
    "append.after_write": "a batch is written to the active segment, not yet fsynced",
    "roll.after_seal": "the old segment is fsynced and its indexes written; no new segment yet",
    "roll.after_new_segment": "the new segment's file exists; the log does not use it yet",
    "retention.after_log_start": "the new log start is saved; the old segments' files still exist",
    "compaction.after_rewrite": "__offsets holds the live values twice (old and rewritten); the old not yet deleted",
    "metadata.before_rename": "a metadata file's replacement is written and fsynced as `.tmp`, not renamed",
    "topic.create.after_partitions": "a new topic's partition directories exist; the catalogue does not list it",
    "topic.delete.after_catalogue": "the catalogue no longer lists the topic; its directories still exist",
}


class FailpointCrash(BaseException):
    """The broker 'died' at a failpoint (a BaseException, so no `except Exception` stops it)."""


# name -> [hits left before it fires, action]
_armed: dict[str, list[object]] = {}


def arm(name: str, *, nth: int = 1, action: str = "raise") -> None:
    if name not in POINTS:
        raise ValueError(f"no failpoint {name!r}; the points are {sorted(POINTS)}")
    if action not in ("raise", "exit"):
        raise ValueError(f"a failpoint raises or exits, not {action!r}")
    _armed[name] = [nth, action]


def disarm() -> None:
    _armed.clear()


def hit(name: str) -> None:
    if not _armed:
        return
    entry = _armed.get(name)
    if entry is None:
        return
    entry[0] = int(entry[0]) - 1  # type: ignore[call-overload]
    if entry[0] > 0:  # type: ignore[operator]
        return
    del _armed[name]
    if entry[1] == "exit":
        os._exit(137)
    raise FailpointCrash(name)


def _arm_from_environment() -> None:
    for item in filter(None, os.environ.get("LOGBROKER_FAILPOINTS", "").split(",")):
        spec, _, action = item.partition(":")
        name, _, nth = spec.partition("@")
        arm(name.strip(), nth=int(nth or 1), action=action or "exit")


_arm_from_environment()

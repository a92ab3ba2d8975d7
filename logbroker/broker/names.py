"""Topic names: they become directory names, so they are checked before they touch the disk."""

from __future__ import annotations

import re

from logbroker.errors import InvalidTopicError

__all__ = ["INTERNAL_PREFIX", "check_topic_name", "is_internal"]

_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
INTERNAL_PREFIX = "__"


def check_topic_name(name: str, *, internal_ok: bool = False) -> None:
    """Raise `InvalidTopicError` unless `name` is a topic name a client may use."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + "..."
        raise InvalidTopicError(f"invalid topic name {shown}: use 1 to 249 characters from A-Z a-z 0-9 . _ -")
    if name in (".", ".."):
        raise InvalidTopicError(f"invalid topic name {name!r}")
    if is_internal(name) and not internal_ok:
        raise InvalidTopicError(f"topic names starting with {INTERNAL_PREFIX!r} are reserved for the broker")


def is_internal(name: str) -> bool:
    return name.startswith(INTERNAL_PREFIX)

"""Topic names: they become directory names, so they are checked before they touch the disk."""

from __future__ import annotations

import re

from logbroker.errors import InvalidGroupIdError, InvalidTopicError

__all__ = ["INTERNAL_PREFIX", "check_group_name", "check_topic_name", "dead_letter_topic", "is_internal"]

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


def check_group_name(name: str) -> None:
    """Group names follow the topic-name rules (a group's dead-letter topic embeds its name)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + "..."
        raise InvalidGroupIdError(
            f"invalid group name {shown}: use 1 to 249 characters from A-Z a-z 0-9 . _ -"
        )


def dead_letter_topic(group: str, topic: str) -> str:
    """The dead-letter topic of `group` for records of `topic`: `dlq.<group>.<topic>`."""
    name = f"dlq.{group}.{topic}"
    if len(name) > 249:
        raise InvalidGroupIdError(
            f"the dead-letter topic {name[:40]}... of group {group!r} would be longer than 249 characters"
        )
    return name

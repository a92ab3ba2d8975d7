"""Settings of one partition log, under Kafka's topic-config names where Kafka has one."""

from __future__ import annotations

import attrs

__all__ = ["LogConfig"]

_MAX_SEGMENT_BYTES = (1 << 31) - 1  # positions in the offset index are int32


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


def _limit_or_unlimited(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < -1:
        raise ValueError(f"{attribute.name} must be -1 (unlimited) or at least 0, not {value}")


def _segment_bytes(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 < value <= _MAX_SEGMENT_BYTES:
        raise ValueError(f"segment.bytes must be between 1 and {_MAX_SEGMENT_BYTES}, not {value}")


@attrs.frozen
class LogConfig:
    """Roll, retention and index settings; times in ms, sizes in bytes, -1 meaning unlimited."""

    #: `segment.bytes`: roll the active segment before it would grow past this.
    segment_bytes: int = attrs.field(default=1 << 30, validator=_segment_bytes)
    #: `segment.ms`: roll the active segment once it is this old.
    segment_ms: int = attrs.field(default=7 * 24 * 3600 * 1000, validator=_positive)
    #: `retention.bytes`: delete the oldest closed segments while the log is larger than this.
    retention_bytes: int = attrs.field(default=-1, validator=_limit_or_unlimited)
    #: `retention.ms`: delete closed segments not written to for this long.
    retention_ms: int = attrs.field(default=7 * 24 * 3600 * 1000, validator=_limit_or_unlimited)
    #: `index.interval.bytes`: bytes of batches between two offset index entries.
    index_interval_bytes: int = attrs.field(default=4096, validator=_positive)

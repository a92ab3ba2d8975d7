"""Topic settings, under Kafka's names, parsed and checked in one place.

| name | default | meaning |
| --- | --- | --- |
| `retention.ms` | 604800000 (7 days) | delete closed segments not written to for this long; -1 keeps them |
| `retention.bytes` | -1 | delete the oldest closed segments while a partition is larger |
| `segment.bytes` | 1073741824 (1 GiB) | roll the active segment before it grows past this |
| `segment.ms` | 604800000 (7 days) | roll the active segment once it is this old |
| `max.message.bytes` | 1048588 | the largest batch a producer may send |
| `message.timestamp.after.max.ms` | 3600000 (1 hour) | refuse batches stamped further in the future; -1 allows any |
| `message.timestamp.before.max.ms` | -1 | refuse batches stamped further in the past; -1 allows any |
| `index.interval.bytes` | 4096 | bytes between two offset index entries |
| `cleanup.policy` | delete | only `delete`: log compaction is not supported |
| `message.timestamp.type` | CreateTime | only `CreateTime`: the producer's timestamps are kept |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from logbroker.errors import InvalidConfigError
from logbroker.storage.config import LogConfig

__all__ = ["TopicConfig"]

_DAY_MS = 24 * 3600 * 1000

# Kafka name -> (attribute, minimum value)
_KEYS: dict[str, tuple[str, int]] = {
    "retention.ms": ("retention_ms", -1),
    "retention.bytes": ("retention_bytes", -1),
    "segment.bytes": ("segment_bytes", 1024),
    "segment.ms": ("segment_ms", 1),
    "max.message.bytes": ("max_message_bytes", 0),
    "message.timestamp.after.max.ms": ("timestamp_after_max_ms", -1),
    "message.timestamp.before.max.ms": ("timestamp_before_max_ms", -1),
    "index.interval.bytes": ("index_interval_bytes", 1),
}
_MAX = (1 << 31) - 1
# Kafka settings accepted with one value only (Kafka clients send them when creating topics).
_FIXED = {"cleanup.policy": "delete", "message.timestamp.type": "CreateTime"}


@attrs.frozen
class TopicConfig:
    retention_ms: int = 7 * _DAY_MS
    retention_bytes: int = -1
    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * _DAY_MS
    max_message_bytes: int = 1048588
    timestamp_after_max_ms: int = 3600 * 1000
    timestamp_before_max_ms: int = -1
    index_interval_bytes: int = 4096

    @classmethod
    def names(cls) -> list[str]:
        return list(_KEYS)

    @classmethod
    def known(cls, name: str) -> bool:
        """Whether `name` is a setting a topic takes (including those with one accepted value)."""
        return name in _KEYS or name in _FIXED

    def with_overrides(self, overrides: Mapping[str, Any]) -> TopicConfig:
        """This config with Kafka-named settings replaced; unknown names and bad values raise
        `InvalidConfigError`."""
        changes: dict[str, int] = {}
        for key, raw in overrides.items():
            if key in _FIXED:
                if str(raw).strip() != _FIXED[key]:
                    raise InvalidConfigError(
                        f"{key}={raw} is not supported: logbroker topics have {key}={_FIXED[key]}"
                    )
                continue
            if key not in _KEYS:
                known = ", ".join([*_KEYS, *_FIXED])
                raise InvalidConfigError(f"unknown topic setting {key!r}; known settings: {known}")
            attribute, minimum = _KEYS[key]
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise InvalidConfigError(f"{key} must be an integer, not {raw!r}") from None
            if value < minimum:
                raise InvalidConfigError(f"{key} must be at least {minimum}, not {value}")
            if attribute in ("segment_bytes", "max_message_bytes", "index_interval_bytes") and value > _MAX:
                raise InvalidConfigError(f"{key} must be at most {_MAX}, not {value}")
            changes[attribute] = value
        return attrs.evolve(self, **changes)

    def to_kafka(self) -> dict[str, str]:
        """Every setting under its Kafka name, as strings (what `topics describe` shows)."""
        return {key: str(getattr(self, attribute)) for key, (attribute, _) in _KEYS.items()} | _FIXED

    def log_config(self) -> LogConfig:
        return LogConfig(
            segment_bytes=self.segment_bytes,
            segment_ms=self.segment_ms,
            retention_bytes=self.retention_bytes,
            retention_ms=self.retention_ms,
            index_interval_bytes=self.index_interval_bytes,
        )

"""The broker core's settings, each owned here and read by everyone else: when appends are
fsynced (`FsyncPolicy`), the defaults of new topics and groups, and the rest of `BrokerOptions`.

The server and the command line never keep a copy of these: `logbroker serve`'s flags and TOML
keys for them are parsed into a `BrokerOptions` (`logbroker.server.config.Settings`), and
everything that needs one (the flusher, acks, the Hello answer, Kafka's DescribeConfigs) reads it
from the broker it serves.
"""

from __future__ import annotations

from typing import Literal

import attrs

from logbroker.broker.topic_config import TopicConfig
from logbroker.errors import InvalidConfigError

__all__ = ["BrokerOptions", "FsyncPolicy", "GroupSettings"]


@attrs.frozen
class FsyncPolicy:
    """When appends are fsynced: `always` (before the ack), `interval:<ms>`, or `never`."""

    mode: Literal["always", "interval", "never"] = "always"
    interval_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        text = text.strip()
        if text in ("always", "never"):
            return cls(text)  # type: ignore[arg-type]
        if text.startswith("interval:"):
            try:
                ms = int(text.partition(":")[2])
            except ValueError:
                ms = -1
            if ms > 0:
                return cls("interval", ms)
        raise InvalidConfigError(f"fsync must be 'always', 'interval:<ms>' (ms > 0) or 'never', not {text!r}")

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}" if self.mode == "interval" else self.mode


@attrs.frozen
class GroupSettings:
    ack_timeout_ms: int = 30_000
    max_deliveries: int = 10
    session_timeout_ms: int = 30_000

    MIN_ACK_TIMEOUT_MS = 100
    MAX_ACK_TIMEOUT_MS = 24 * 3600 * 1000
    MIN_SESSION_TIMEOUT_MS = 100
    MAX_SESSION_TIMEOUT_MS = 30 * 60 * 1000
    MAX_MAX_DELIVERIES = 1000

    def with_overrides(
        self, ack_timeout_ms: int | None, max_deliveries: int | None, session_timeout_ms: int | None
    ) -> GroupSettings:
        """These settings with the given ones replaced; values out of bounds raise."""
        changes: dict[str, int] = {}
        if ack_timeout_ms is not None:
            if not self.MIN_ACK_TIMEOUT_MS <= ack_timeout_ms <= self.MAX_ACK_TIMEOUT_MS:
                raise InvalidConfigError(
                    f"the ack timeout must be {self.MIN_ACK_TIMEOUT_MS / 1000} s to "
                    f"{self.MAX_ACK_TIMEOUT_MS // 1000} s, not {ack_timeout_ms / 1000} s"
                )
            changes["ack_timeout_ms"] = ack_timeout_ms
        if max_deliveries is not None:
            if not 1 <= max_deliveries <= self.MAX_MAX_DELIVERIES:
                raise InvalidConfigError(
                    f"max deliveries must be 1 to {self.MAX_MAX_DELIVERIES}, not {max_deliveries}"
                )
            changes["max_deliveries"] = max_deliveries
        if session_timeout_ms is not None:
            if not self.MIN_SESSION_TIMEOUT_MS <= session_timeout_ms <= self.MAX_SESSION_TIMEOUT_MS:
                raise InvalidConfigError(
                    f"the session timeout must be {self.MIN_SESSION_TIMEOUT_MS / 1000} s to "
                    f"{self.MAX_SESSION_TIMEOUT_MS // 1000} s, not {session_timeout_ms / 1000} s"
                )
            changes["session_timeout_ms"] = session_timeout_ms
        return attrs.evolve(self, **changes)


@attrs.frozen
class BrokerOptions:
    """Everything the broker core is told at start (`Broker.open`, `Broker.in_memory`)."""

    #: When appends are fsynced, and so when a produce is acked and what consumers may see.
    fsync: FsyncPolicy = attrs.Factory(FsyncPolicy)
    #: A producer may create a missing topic by naming it, with `default_partitions` and
    #: `topic_defaults`: on by default, as Kafka's `auto.create.topics.enable` (which requests:
    #: a producer's, at the front doors; a consumer's never create a topic). The one default of
    #: this setting: `serve` and `logbroker.testing` take it from here.
    auto_create_topics: bool = True
    #: Partitions of a topic created without a count.
    default_partitions: int = 1
    topic_defaults: TopicConfig = attrs.Factory(TopicConfig)
    group_defaults: GroupSettings = attrs.Factory(GroupSettings)
    #: Wait this long after the first member joins an empty group before assigning partitions,
    #: so members that start together share the first generation.
    group_initial_delay_ms: int = 300
    #: The same for Kafka's classic groups (Kafka's group.initial.rebalance.delay.ms).
    classic_initial_delay_ms: int = 3000
    #: Refuse produces when the disk of the data directory has less free than this (bytes), so
    #: that commits, dead letters and metadata still fit on a disk producers filled (0: never).
    min_free_bytes: int = 0

    def __attrs_post_init__(self) -> None:
        if self.default_partitions < 1:
            raise InvalidConfigError("default_partitions must be at least 1")
        if self.min_free_bytes < 0:
            raise InvalidConfigError("min_free_bytes must not be negative")
        if self.group_initial_delay_ms < 0 or self.classic_initial_delay_ms < 0:
            raise InvalidConfigError("group initial delays must not be negative")

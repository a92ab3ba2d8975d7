"""Topic admin for both front doors: create (or only check), alter, delete, list, describe, look
up offsets, and the producer ids idempotent producers start from."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from logbroker.broker.broker import TopicInfo
from logbroker.broker.options import BrokerOptions
from logbroker.engine import clock
from logbroker.engine.core import EngineCore
from logbroker.errors import CorruptRecordError, LogbrokerError
from logbroker.records.codec import decode_batch

__all__ = ["Topics"]

logger = logging.getLogger("logbroker.topics")


class Topics:
    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._broker = core.broker

    @property
    def options(self) -> BrokerOptions:
        """The broker's settings (what Kafka's DescribeConfigs shows of the broker)."""
        return self._broker.options

    def create(
        self,
        name: str,
        partitions: int | None = None,
        config: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
    ) -> TopicInfo | None:
        """Create a topic; with `validate_only`, only check that it could be (None)."""
        if validate_only:
            self._broker.check_new_topic(name, partitions, config)
            return None
        return self._broker.create_topic(name, partitions, config, now_ms=clock.wall_ms())

    def auto_create(self, name: str, *, by: str) -> None:
        """Create `name` if it is missing and the broker creates topics on first produce (see
        `Broker.auto_create_topic`); the front doors call it for the topics a producer's request
        names (`by`: who asked, for the log). Every such creation is logged here, once."""
        info = self._broker.auto_create_topic(name, now_ms=clock.wall_ms())
        if info is not None:
            count = info.partitions
            logger.info(
                "created topic %r (%d partition%s) on first produce by %s",
                name,
                count,
                "" if count == 1 else "s",
                by,
            )

    def alter(
        self,
        name: str,
        changes: Mapping[str, str | None],
        *,
        replace: bool = False,
        validate_only: bool = False,
    ) -> TopicInfo:
        return self._broker.alter_topic_config(name, changes, replace=replace, validate_only=validate_only)

    def delete(self, name: str) -> None:
        self._broker.delete_topic(name)

    def list(self, *, include_internal: bool = False) -> list[TopicInfo]:
        return self._broker.list_topics(include_internal=include_internal)

    def describe(self, name: str) -> TopicInfo:
        return self._broker.describe_topic(name)

    def exists(self, name: str) -> bool:
        return self._broker.has_topic(name)

    def partition_count(self, name: str) -> int:
        return self._broker.partition_count(name)

    def list_offset(self, topic: str, partition: int, spec: str | int) -> int | None:
        """'earliest', 'latest', or the first offset at or after a timestamp (ms), or None."""
        return self._broker.list_offset(topic, partition, spec)

    def timestamp_at(self, topic: str, partition: int, offset: int) -> int:
        """The timestamp of the record at `offset` (-1 if it cannot be read): what Kafka's
        ListOffsets by time answers with beside the offset."""
        try:
            data = self._broker.log(topic, partition).read(offset, 1)
            _, records = decode_batch(data)
            return next(r.timestamp for r in records if r.offset == offset)
        except (LogbrokerError, CorruptRecordError, StopIteration):
            return -1

    def allocate_producer_id(self) -> int:
        """A producer id no one has had (an idempotent producer starts at epoch 0)."""
        return self._broker.allocate_producer_id()

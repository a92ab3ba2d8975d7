"""What every service of the engine works with: the broker and the groups it drives, the
wake-ups of waiting requests, the flusher, and whether the engine is shutting down."""

from __future__ import annotations

from logbroker.broadcast import Broadcast
from logbroker.broker.broker import Broker
from logbroker.engine.flusher import Flusher
from logbroker.engine.signals import Signals
from logbroker.groups.coordinator import GroupCoordinator

__all__ = ["EngineCore"]


class EngineCore:
    def __init__(self, broker: Broker, groups: GroupCoordinator) -> None:
        self.broker = broker
        self.groups = groups
        self.signals = Signals()
        self.flusher = Flusher(broker, on_flushed=self.signals.notify_partition)
        #: Fired after a change to group state that may move the groups' next deadline.
        self.group_timer = Broadcast()
        #: Set when the engine shuts down: long polls return at once, new requests are refused.
        self.closing = False

    def appended(self, topic: str, partition: int) -> None:
        """Records were appended: under `fsync=always` the flusher makes them durable (and
        visible); otherwise they are visible now."""
        if self.flusher.acks_wait:
            self.flusher.poke()
        else:
            self.signals.notify_partition(topic, partition)

    def group_changed(self, group: str) -> None:
        """A group's state changed: wake its waiting requests and let the timer look again."""
        self.signals.notify_group(group)
        self.group_timer.fire()

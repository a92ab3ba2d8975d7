"""`Engine`: the broker's services, written once for both front doors.

    engine = Engine(broker, retention_check_interval=60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run)           # the flusher, the group timer, housekeeping
        result = engine.produce.append("orders", 0, batches)
        errors = await engine.produce.acked([result], timeout_s=30)
        ...
        engine.shut_down()                       # long polls return, then:
        await engine.flush()

The services speak in the broker core's terms, never a protocol's: `topics` (admin), `produce`
(append now, ack once durable), `fetch` (long polls over the high watermark), `groups` (native
consumer groups), `classic` (Kafka's classic groups). Each front door (`logbroker.server.native`,
`logbroker.server.kafka`) turns its wire requests into these calls and their results into its
answers, and nothing else. Timeouts use trio's clock and timestamps the wall clock (`clock`):
the core below takes both as arguments.
"""

from __future__ import annotations

import logging

import trio

from logbroker.broker.broker import Broker
from logbroker.engine import clock
from logbroker.engine.classic import ClassicGroupService
from logbroker.engine.core import EngineCore
from logbroker.engine.fetch import Fetch
from logbroker.engine.groups import Groups
from logbroker.engine.produce import Produce
from logbroker.engine.topics import Topics
from logbroker.errors import LogbrokerError
from logbroker.groups.coordinator import GroupCoordinator

__all__ = ["Engine"]

logger = logging.getLogger("logbroker.engine")


class Engine:
    def __init__(self, broker: Broker, *, retention_check_interval: float = 60.0) -> None:
        self.broker = broker
        self.retention_check_interval = retention_check_interval
        self.core = EngineCore(broker, GroupCoordinator(broker, now_ms=clock.wall_ms()))
        self.topics = Topics(self.core)
        self.produce = Produce(self.core)
        self.fetch = Fetch(self.core)
        self.groups = Groups(self.core)
        self.classic = ClassicGroupService(self.core)
        # A topic created or deleted may change what groups subscribe to: the timer reassigns.
        broker.topic_listeners.append(self._topic_changed)

    @property
    def closing(self) -> bool:
        return self.core.closing

    @property
    def coordinator(self) -> GroupCoordinator:
        """The consumer groups' state (for tests and tools that look inside)."""
        return self.core.groups

    async def run(self) -> None:
        """The engine's background work, until cancelled: the flusher (group commit), the group
        timer, and housekeeping (retention, `__offsets` compaction, producer-state snapshots)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.core.flusher.run)
            nursery.start_soon(self.groups.run_timer)
            nursery.start_soon(self._housekeeping)

    def shut_down(self) -> None:
        """Refuse new work and end every long poll now; what is in flight is still answered."""
        self.core.closing = True
        self.core.signals.notify_all()

    async def flush(self) -> None:
        """Make everything appended durable (the last thing a shutdown does)."""
        await self.core.flusher.flush_round()

    def close(self) -> None:
        """Let go of the broker, which outlives the engine (whoever opened it closes it)."""
        if self._topic_changed in self.broker.topic_listeners:
            self.broker.topic_listeners.remove(self._topic_changed)
        self.core.groups.close()

    def _topic_changed(self, topic: str) -> None:
        self.core.group_timer.fire()

    async def _housekeeping(self) -> None:
        broker = self.broker
        while True:
            await trio.sleep(self.retention_check_interval)
            try:
                deleted = broker.apply_retention(clock.wall_ms())
                if deleted:
                    logger.info("retention deleted %d segment(s)", deleted)
                if self.core.groups.maybe_compact(clock.wall_ms()):
                    logger.info("compacted %s", "__offsets")
                broker.snapshot_producer_state(clock.wall_ms())
            except LogbrokerError as exc:  # tried again at the next check
                logger.error("housekeeping: %s", exc.message)
            for note in broker.notes:
                logger.warning("%s", note)
            broker.notes.clear()

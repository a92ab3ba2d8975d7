"""kill -9 under load: producers and a group consumer against a `logbroker serve` subprocess that
is killed at random moments and started again, then a history check of everything.

The producers send small batches of unique payload ids (one producer per partition, so each
one's acked order is the log order) and record every outcome. The group consumer reads and acks
each poll through every kill (it reconnects and rejoins). A watcher records the group's committed offsets.
After the last restart the producers stop, the consumer drains what was acked, and the whole log
is read back from the start for `history.check`; committed offsets must never have gone back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

import logbroker
from logbroker.errors import LogbrokerError
from logbroker.testing import ServeProcess
from tools.campaigns.history import (
    FAILED,
    OK,
    History,
    Report,
    check,
    committed_went_back,
    produce,
    read_back,
)

__all__ = ["Kill9Result", "run_kill9"]

TOPIC = "history"
GROUP = "checker"
#: The broker is gone or restarting: wait this long before trying again.
RETRY_DELAY = 0.05


@attrs.define
class Kill9Result:
    kills: int
    report: Report
    committed_back: list[str]
    commit_snapshots: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.committed_back

    def summary(self) -> str:
        back = f"; committed offsets WENT BACK: {self.committed_back[:3]}" if self.committed_back else ""
        return (
            f"{self.kills} kills in {self.seconds:.1f} s; {self.commit_snapshots} commit snapshots; "
            f"{self.report.summary()}{back}"
        )


async def run_kill9(
    data_dir: Path,
    *,
    kills: int = 5,
    seed: int = 0,
    producers: int = 3,
    fsync: str = "always",
    uptime: tuple[float, float] = (0.3, 1.0),
    drain_timeout: float = 60.0,
    log: Callable[[str], None] = lambda _: None,
) -> Kill9Result:
    """Run the campaign; `uptime` is the range (s) of how long the broker runs between kills."""
    rng = random.Random(seed)
    history = History()
    snapshots: list[dict[int, int]] = []
    broker = ServeProcess(
        "--fsync",
        fsync,
        "--log-level",
        "warning",
        "--group-initial-delay",
        "0",
        data_dir=data_dir / "data",
        log_path=data_dir / "broker.log",
    )
    started = trio.current_time()
    try:
        await trio.to_thread.run_sync(broker.start)
        async with await logbroker.connect(broker.address) as admin:
            await admin.create_topic(TOPIC, partitions=producers)
        stop_producing = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_consume, broker, history)
            nursery.start_soon(_watch_commits, broker, snapshots)
            async with trio.open_nursery() as producing:
                for n in range(producers):
                    producing.start_soon(
                        _produce, broker, f"p{n}", n, history, stop_producing, rng.randrange(1 << 30)
                    )
                for k in range(kills):
                    await trio.sleep(rng.uniform(*uptime))
                    broker.kill()
                    log(f"kill {k + 1}/{kills}: {len(history.attempts)} attempts so far")
                    await trio.sleep(rng.uniform(0.0, 0.1))
                    await trio.to_thread.run_sync(broker.start)  # on the same port
                await trio.sleep(uptime[0])
                stop_producing.set()
            # Every producer has finished its last attempt, so every outcome is known: an attempt
            # still in flight when the drain began could be acked after it and never be waited for
            # (the cause of a rare "unconsumed" in loaded test runs).
            await _wait_consumed(history, drain_timeout)
            nursery.cancel_scope.cancel()
        async with await logbroker.connect(broker.address) as client:
            records, log_start = await read_back(client, TOPIC, producers)
    finally:
        broker.kill()
        broker.close()
    report = check(history, records, log_start=log_start)
    return Kill9Result(
        kills, report, committed_went_back(snapshots), len(snapshots), trio.current_time() - started
    )


async def _produce(
    broker: ServeProcess, name: str, partition: int, history: History, stop: trio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    async with logbroker.Client(broker.address, connect_timeout=2.0) as client:
        while not stop.is_set():
            attempt = history.next_attempt(name, partition, rng.randint(1, 5))
            if not await produce(client, TOPIC, attempt) or attempt.outcome == FAILED:
                await trio.sleep(RETRY_DELAY)  # the broker is gone or restarting


async def _consume(broker: ServeProcess, history: History) -> None:
    """Read and ack everything, through every kill: reconnect and rejoin after each. Each poll's
    records are acked together, by acking the last of each partition."""
    while True:
        try:
            async with (
                await logbroker.connect(broker.address, connect_timeout=2.0) as client,
                client.group_consumer(GROUP, TOPIC, start="earliest", session_timeout=2.0) as consumer,
            ):
                while True:
                    last = {}
                    for message in await consumer.poll():
                        history.read(message.partition, message.offset, message.value or b"")
                        last[message.partition] = message
                    for message in last.values():  # one commit a partition a poll
                        await message.ack()
        except LogbrokerError:
            await trio.sleep(RETRY_DELAY)


async def _watch_commits(broker: ServeProcess, snapshots: list[dict[int, int]]) -> None:
    while True:
        try:
            async with await logbroker.connect(broker.address, connect_timeout=2.0) as client:
                while True:
                    rows = await client.group_offsets(GROUP, TOPIC)
                    snapshots.append({row.partition: row.committed for row in rows})
                    await trio.sleep(0.1)
        except LogbrokerError:
            await trio.sleep(RETRY_DELAY)


async def _wait_consumed(history: History, within: float) -> None:
    """Until the consumer has read every acked payload (or `within` s pass: the check says what
    it missed)."""
    with trio.move_on_after(within):
        while True:
            read = {r.payload for r in history.reads}
            if all(p in read for a in history.attempts if a.outcome == OK for p in a.payloads):
                return
            await trio.sleep(0.1)

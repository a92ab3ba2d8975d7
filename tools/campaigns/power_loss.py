"""Power loss: the whole server runs in-process on the `FaultFileSystem` seam, producers send
over TCP, and at a random moment the power goes: every byte not covered by a completed fsync is
forgotten (half the time the unsynced tail of a file is torn instead, as a disk may leave it),
and the server dies without shutting down. The broker is then opened again on what is left,
recovers, and the round's history is checked against what it serves:

- no mode: no record at an offset other than the one it was acked at, no duplicate, no phantom,
  no gap; records from earlier rounds byte for byte as they were;
- `fsync=always`: no acked record lost;
- `fsync=interval:<ms>`: only records acked within the last interval (plus the time an fsync
  takes, `FLUSH_SLACK`) before the power went may be lost;
- `fsync=never`: acked records may be lost (the mode only survives a process crash), but only
  from the end of the log.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import attrs
import trio

import logbroker
from logbroker.broker.broker import Broker
from logbroker.records.codec import iter_records
from logbroker.server.config import Settings
from logbroker.server.server import Server
from logbroker.storage.fault_fs import FaultFileSystem
from tools.campaigns.history import History, Outcome, Report, check, produce

__all__ = ["PowerLossResult", "run_power_loss"]

TOPIC = "history"
DATA_DIR = "/data"
#: How long after an ack the fsync that covers it may still be running under `interval:<ms>`.
FLUSH_SLACK = 0.25

Log = dict[int, list[tuple[int, bytes]]]


@attrs.define
class PowerLossResult(Outcome):
    rounds: int = 0
    torn: int = 0
    acked: int = 0
    acked_lost: int = 0
    records_checked: int = 0

    def summary(self) -> str:
        verdict = self.verdict()
        return (
            f"{self.rounds} power losses ({self.torn} with torn tails); {self.acked} records acked, "
            f"{self.acked_lost} of them lost (allowed by the mode); {self.records_checked} records "
            f"checked after recovery; {verdict}"
        )


async def run_power_loss(
    *,
    rounds: int = 5,
    seed: int = 0,
    fsync: str = "always",
    partitions: int = 2,
    uptime: tuple[float, float] = (0.2, 0.6),
    log: Callable[[str], None] = lambda _: None,
) -> PowerLossResult:
    rng = random.Random(seed)
    fs = FaultFileSystem(seed=seed)
    settings = Settings.from_mapping(
        {"host": "127.0.0.1", "port": 0, "data_dir": DATA_DIR, "fsync": fsync, "log_level": "error"}
    )
    window = _loss_window(fsync)
    result = PowerLossResult()
    before: Log = {p: [] for p in range(partitions)}
    for round_number in range(rounds):
        history = History()
        broker = Broker.open(DATA_DIR, settings.broker, fs=fs, now_ms=_wall_ms())
        if round_number == 0:
            broker.create_topic(TOPIC, partitions, now_ms=_wall_ms())
        start = {p: broker.log(TOPIC, p).next_offset for p in range(partitions)}
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(Server(broker, settings.server_config()).run)
            for p in range(partitions):
                nursery.start_soon(
                    _produce, server.address, f"r{round_number}p{p}", p, history, rng.randrange(1 << 30)
                )
            await trio.sleep(rng.uniform(*uptime))
            torn = rng.random() < 0.5
            fs.power_loss(tear=torn)  # the process dies with it: no flush, no close
            power_off = trio.current_time()
            nursery.cancel_scope.cancel()
        result.rounds += 1
        result.torn += torn
        after = _read_all(fs, settings, partitions)
        result.records_checked += sum(len(records) for records in after.values())
        for p in range(partitions):
            if after[p][: start[p]] != before[p][: start[p]]:
                result.violations.append(
                    f"round {round_number}: partition {p} changed below offset {start[p]}"
                )
        report = check(
            history, {p: after[p][start[p] :] for p in after}, log_start=start, expect_consumed=False
        )
        result.acked += report.acked
        result.acked_lost += len(report.lost)
        found = [f"round {round_number}: {v}" for v in _violations(report, history, power_off, window)]
        result.violations.extend(found)
        log(
            f"power loss {round_number + 1}/{rounds} (torn: {torn}): {report.acked} acked, {len(report.lost)} "
            f"of them lost, {report.unknown} unknown; {len(found)} violations"
        )
        before = after
    return result


def _loss_window(fsync: str) -> float | None:
    """Seconds before the power went in which acked records may be lost (None: any)."""
    if fsync == "always":
        return 0.0
    if fsync.startswith("interval:"):
        return int(fsync.split(":", 1)[1]) / 1000 + FLUSH_SLACK
    return None


def _violations(report: Report, history: History, power_off: float, window: float | None) -> list[str]:
    found = [f"{kind}: {items[:3]}" for kind, items in report.violations.items() if kind != "lost"]
    if report.lost and window is not None:
        acked_at = {payload: a.acked_at for a in history.attempts for payload in a.payloads}
        early = [p for p in report.lost if (acked_at[p] or 0.0) < power_off - window]
        if early:
            found.append(
                f"lost {len(early)} records acked more than {window:.3f} s before the power went: {early[:3]}"
            )
    return found


async def _produce(address: str, name: str, partition: int, history: History, seed: int) -> None:
    rng = random.Random(seed)
    async with logbroker.Client(address, connect_timeout=2.0) as client:
        while await produce(client, TOPIC, history.next_attempt(name, partition, rng.randint(1, 5))):
            pass  # until the power goes


def _read_all(fs: FaultFileSystem, settings: Settings, partitions: int) -> Log:
    """Open the broker on what the power loss left (recovery runs), and read every record."""
    broker = Broker.open(DATA_DIR, settings.broker, fs=fs, now_ms=_wall_ms())
    try:
        records: Log = {}
        for p in range(partitions):
            log = broker.log(TOPIC, p)
            data = log.read(log.log_start_offset, 1 << 30)
            records[p] = [(r.offset, r.value or b"") for r in iter_records(data)]
        return records
    finally:
        broker.close()


def _wall_ms() -> int:
    return int(time.time() * 1000)

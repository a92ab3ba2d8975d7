"""Clock jumps: the wall clock jumping forwards or back moves no timeout (ack, session, idle:
they run on the monotonic clock), and record timestamps far in the past or future neither get
fresh data deleted nor keep old data forever (retention ages a segment by the broker's time of
its last append)."""

from __future__ import annotations

import time

import pytest
import trio

import logbroker
from logbroker.engine import clock
from logbroker.records import encode_batch
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.storage.log import PartitionLog
from logbroker.testing import run_broker

HOUR, YEAR = 3_600_000, 365 * 86_400_000


async def test_wall_clock_jumps_move_no_ack_or_session_timeout(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jump = [0]
    monkeypatch.setattr(clock, "wall_ms", lambda: int(time.time() * 1000) + jump[0])
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"unacked"])
        async with client.group_consumer(
            "g", "t", ack_timeout=10, session_timeout=30, start="earliest"
        ) as group:
            [first] = await group.poll()
            delivered = trio.current_time()
            generation = group.generation
            for step in (YEAR, -HOUR, -YEAR, HOUR):  # the wall clock jumps while the ack is due
                jump[0] += step
                await trio.sleep(2)
            again: list[logbroker.client.group_consumer.GroupMessage] = []
            while not again:
                again = await group.poll()
            waited = trio.current_time() - delivered
            assert again[0].offset == first.offset and again[0].delivery_count == 2
            assert 10 <= waited < 11.5, f"redelivered after {waited:.2f} s, not after the 10 s ack timeout"
            assert group.generation == generation  # the session never timed out
            await again[0].ack()


@pytest.mark.parametrize("stamp", [0, 4_000_000_000_000], ids=["1970", "2096"])
def test_record_timestamps_do_not_decide_retention(stamp: int) -> None:
    now = 1_767_225_600_000
    fs = FaultFileSystem()
    log = PartitionLog.open(fs, "/d/t-0", LogConfig(retention_ms=HOUR), now_ms=now)
    log.append(encode_batch([b"odd time"], timestamp=stamp), now_ms=now)
    log.roll(now)
    log.append(encode_batch([b"next"], timestamp=now), now_ms=now + HOUR // 2)
    assert log.apply_retention(now + HOUR - 1) == 0  # 1970: not deleted while fresh
    assert log.apply_retention(now + HOUR + 1) == 1  # 2096: not kept past its hour
    assert log.log_start_offset == 1
    log.close()

"""Idempotent produce end to end: batches with producer ids through the native protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import logbroker
from logbroker.errors import InvalidProducerEpochError, OutOfOrderSequenceError
from logbroker.protocol.messages import FetchPartition
from logbroker.records import encode_batch, iter_records
from logbroker.storage.partition_dir import PRODUCER_STATE_FILE
from logbroker.testing import run_broker


def idempotent(count: int, *, seq: int, pid: int = 7, epoch: int = 0) -> bytes:
    values = [b"s%d+%d" % (seq, i) for i in range(count)]
    return encode_batch(values, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


async def test_a_retried_batch_is_acked_with_its_original_offset_and_stored_once(tmp_path: Path) -> None:
    async with (
        run_broker(data_dir=str(tmp_path)) as running,
        await logbroker.connect(running.address) as client,
    ):
        await client.create_topic("t")
        assert await client.produce_batches("t", 0, idempotent(2, seq=0)) == 0
        assert await client.produce_batches("t", 0, idempotent(3, seq=2)) == 2
        assert await client.produce_batches("t", 0, idempotent(2, seq=0)) == 0  # the retry
        with pytest.raises(OutOfOrderSequenceError, match="sent sequence 9 where 5 comes next"):
            await client.produce_batches("t", 0, idempotent(1, seq=9))
        assert await client.produce_batches("t", 0, idempotent(1, seq=0, epoch=1)) == 5
        with pytest.raises(InvalidProducerEpochError):
            await client.produce_batches("t", 0, idempotent(1, seq=5))
        _, payload = await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=0)
        assert [r.value for r in iter_records(payload)] == [
            b"s0+0",
            b"s0+1",
            b"s2+0",
            b"s2+1",
            b"s2+2",
            b"s0+0",
        ]
        # Plain producers (producer id -1, what the native client sends) are not affected.
        async with client.producer(linger_ms=1) as producer:
            deliveries = [await producer.send("t", b"plain %d" % i) for i in range(50)]
        assert sorted(d.result().offset for d in deliveries) == list(range(6, 56))


async def test_housekeeping_snapshots_the_producer_state(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    snapshot = tmp_path / "t-0" / PRODUCER_STATE_FILE
    async with (
        run_broker(data_dir=str(tmp_path), fsync="interval:100", retention_check_interval=30) as running,
        await logbroker.connect(running.address) as client,
    ):
        await client.create_topic("t")
        await client.produce_batches("t", 0, idempotent(2, seq=0))
        assert not snapshot.exists()
        await trio.sleep(31)
        state = json.loads(snapshot.read_text())
        assert state["offset"] == 2
        assert [p["id"] for p in state["producers"]] == [7]

"""Idempotent produce across a real kill -9 of `logbroker serve`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

import logbroker
from logbroker.errors import OutOfOrderSequenceError
from logbroker.records import encode_batch
from logbroker.testing import ServeProcess


def idempotent(count: int, seq: int) -> bytes:
    return encode_batch(
        [b"s%d+%d" % (seq, i) for i in range(count)], producer_id=7, producer_epoch=0, base_sequence=seq
    )


def test_a_retry_after_kill_9_is_answered_with_the_original_offset(
    serve_process: Callable[..., ServeProcess],
) -> None:
    sent = [(idempotent(3, seq), seq) for seq in range(0, 15, 3)]

    async def produce_all(address: str) -> list[int]:
        async with await logbroker.connect(address) as client:
            await client.create_topic("t")
            return [await client.produce_batches("t", 0, data) for data, _ in sent]

    async def retry_all(address: str) -> list[int]:
        async with await logbroker.connect(address) as client:
            with pytest.raises(OutOfOrderSequenceError):
                await client.produce_batches("t", 0, idempotent(1, 16))
            offsets = [await client.produce_batches("t", 0, data) for data, _ in sent]
            assert await client.produce_batches("t", 0, idempotent(1, 15)) == 15
            return offsets

    server = serve_process()
    acked = trio.run(produce_all, server.address)
    assert acked == [0, 3, 6, 9, 12]
    server.kill()  # no clean shutdown, no snapshot: the state comes from the batch headers
    server = serve_process()
    assert trio.run(retry_all, server.address) == acked
    code, _ = server.stop()
    assert code == 0

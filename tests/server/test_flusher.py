"""The flusher (group commit) on its own, without sockets: a flush that fails, even before its
fsync can start, makes that log read-only and its waiters get `LogReadOnlyError`, never an ack;
the flusher itself goes on."""

from __future__ import annotations

import pytest

from logbroker.broker.broker import Broker, BrokerOptions, Durable
from logbroker.engine.flusher import Flusher
from logbroker.errors import LogReadOnlyError
from logbroker.records.codec import encode_batch
from logbroker.storage.fault_fs import FaultFileSystem


async def test_a_flush_that_cannot_start_makes_the_log_read_only_instead_of_raising() -> None:
    # Found by the power-loss campaign: taking the descriptor for an fsync (`dup`) failed with
    # EBADF, and the OSError escaped the flusher and stopped the whole server. (EMFILE would do
    # the same on a real disk.)
    fs = FaultFileSystem()
    broker = Broker.open("/data", BrokerOptions(), fs=fs, now_ms=0)
    broker.create_topic("t", now_ms=0)
    broker.produce("t", 0, encode_batch([b"x"], timestamp=0), now_ms=0)
    flushed: list[tuple[str, int]] = []
    flusher = Flusher(broker, on_flushed=lambda topic, partition: flushed.append((topic, partition)))
    fs.power_loss()  # every open handle is dead now
    await flusher.flush_round()
    assert broker.read_only_reason("t", 0) is not None and flushed == [("t", 0)]
    with pytest.raises(LogReadOnlyError):
        await flusher.wait_durable(Durable("t", 0, 1))

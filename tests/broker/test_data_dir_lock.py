"""One broker per data directory, whoever opens it: the lock belongs to `Broker.open`."""

from __future__ import annotations

from pathlib import Path

import pytest

from logbroker.broker.broker import Broker
from logbroker.errors import StorageError
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.testing import BrokerThread, run_broker

NOW = 1_700_000_000_000


def test_a_second_broker_cannot_open_a_data_directory_that_one_holds(tmp_path: Path) -> None:
    first = Broker.open(str(tmp_path), now_ms=NOW)
    try:
        with pytest.raises(StorageError, match=f"{tmp_path} is locked by another process"):
            Broker.open(str(tmp_path), now_ms=NOW)
    finally:
        first.close()
    Broker.open(str(tmp_path), now_ms=NOW).close()  # closing gave it back


async def test_two_embedded_brokers_cannot_share_a_data_directory(tmp_path: Path) -> None:
    async with run_broker(data_dir=str(tmp_path)):
        with pytest.raises(StorageError, match="is locked by another process"):
            async with run_broker(data_dir=str(tmp_path)):
                pass


def test_a_broker_thread_cannot_open_a_data_directory_a_running_broker_holds(tmp_path: Path) -> None:
    with (
        BrokerThread(data_dir=str(tmp_path)),
        pytest.raises(StorageError, match="is locked by another process"),
        BrokerThread(data_dir=str(tmp_path)),
    ):
        pass


def test_a_killed_process_leaves_its_data_directory_free_and_a_live_one_does_not() -> None:
    fs = FaultFileSystem()
    broker = Broker.open("/data", fs=fs, now_ms=NOW)
    with pytest.raises(StorageError, match="/data is locked"):
        Broker.open("/data", fs=fs, now_ms=NOW)
    fs.kill()  # the holder dies without closing anything
    Broker.open("/data", fs=fs, now_ms=NOW).close()
    del broker


def test_a_failed_open_gives_the_lock_back() -> None:
    fs = FaultFileSystem()
    broker = Broker.open("/data", fs=fs, now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    broker.close()
    fs.fail("open", times=None)  # every partition open fails now
    with pytest.raises(StorageError):
        Broker.open("/data", fs=fs, now_ms=NOW)
    fs.clear_faults()
    Broker.open("/data", fs=fs, now_ms=NOW).close()

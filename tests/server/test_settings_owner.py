"""Each setting has one owner: the fsync policy is the broker's, and everything that acks, flushes
or reports it reads it from the broker it serves (a second copy in the server's settings once made
acks time out under `never`, and kept the high watermark at 0 under `always`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import logbroker
from logbroker.broker.broker import Broker
from logbroker.broker.options import BrokerOptions, FsyncPolicy
from logbroker.errors import InvalidConfigError
from logbroker.protocol.messages import FetchPartition
from logbroker.server.config import ServerConfig, Settings
from logbroker.server.server import Server
from logbroker.testing import BrokerThread, run_broker
from tests.helpers import offsets

POLICIES = ["always", "interval:20", "never"]


async def produce_and_read_back(address: str, *, fsync: str, durable: bool) -> None:
    """A produce with acks=1 is answered within a second, a fetch sees its records at once
    (the high watermark moved), and the broker reports the policy it runs."""
    async with await logbroker.connect(address) as client:
        assert client.broker_info is not None
        assert client.broker_info.fsync == (fsync if durable else "memory")
        await client.create_topic("t")
        with trio.fail_after(1):
            base = await client.produce("t", [b"a", b"b"])
        assert base == 0
        with trio.fail_after(1):
            response, payload = await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=0)
        assert response.partitions[0].high_watermark == 2
        assert offsets(payload) == [0, 1]


@pytest.mark.parametrize("fsync", POLICIES)
@pytest.mark.parametrize("storage", ["files", "memory"])
async def test_run_broker_acks_and_shows_records_under_every_fsync_policy(
    fsync: str, storage: str, tmp_path: Path
) -> None:
    data_dir = str(tmp_path / "data") if storage == "files" else None
    async with run_broker(data_dir=data_dir, fsync=fsync) as running:
        assert running.broker.options.fsync == FsyncPolicy.parse(fsync)
        await produce_and_read_back(running.address, fsync=fsync, durable=storage == "files")


@pytest.mark.parametrize("fsync", POLICIES)
def test_broker_thread_acks_and_shows_records_under_every_fsync_policy(fsync: str, tmp_path: Path) -> None:
    with BrokerThread(data_dir=str(tmp_path / "data"), fsync=fsync) as running:
        trio.run(lambda: produce_and_read_back(running.address, fsync=fsync, durable=True))


@pytest.mark.parametrize("fsync", POLICIES)
async def test_a_server_follows_the_fsync_policy_of_the_broker_it_is_given(
    fsync: str, tmp_path: Path
) -> None:
    """The server's settings hold no fsync policy that could contradict the broker's."""
    broker = Broker.open(str(tmp_path / "data"), BrokerOptions(fsync=FsyncPolicy.parse(fsync)), now_ms=0)
    try:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(Server(broker, ServerConfig(port=0)).run)
            await produce_and_read_back(server.address, fsync=fsync, durable=True)
            server.request_shutdown()
    finally:
        broker.close()


def test_the_fsync_setting_belongs_to_the_broker_options_only() -> None:
    settings = Settings.from_mapping({"fsync": "never", "default_partitions": 3, "port": 0})
    assert settings.broker.fsync == FsyncPolicy("never")
    assert settings.broker.default_partitions == 3
    assert not hasattr(settings.server, "fsync")
    assert not hasattr(settings.server, "default_partitions")


def test_auto_creation_has_one_default_on_which_serve_and_the_embedded_brokers_take() -> None:
    assert BrokerOptions().auto_create_topics is True  # Kafka's auto.create.topics.enable
    assert Settings().broker.auto_create_topics is True
    assert Settings.from_mapping({"auto-create-topics": False}).broker.auto_create_topics is False
    assert not hasattr(Settings().server, "auto_create_topics")
    with BrokerThread() as running:
        assert running.broker.options.auto_create_topics is True
    with BrokerThread(auto_create_topics=False) as running:
        assert running.broker.options.auto_create_topics is False


def test_log_level_takes_every_level_logging_knows_in_any_case() -> None:
    for level in ("debug", "INFO", "warn", "Error", "critical"):
        assert Settings.from_mapping({"log_level": level}).log_level == level
    with pytest.raises(InvalidConfigError, match="log_level"):
        Settings.from_mapping({"log_level": "loud"})


async def test_a_server_whose_port_is_taken_leaves_nothing_open_or_attached(tmp_path: Path) -> None:
    broker = Broker.in_memory(now_ms=0)
    async with trio.open_nursery() as nursery:
        running: Server = await nursery.start(Server(broker, ServerConfig(port=0)).run)
        for _ in range(3):
            with pytest.raises(OSError, match="in use"):
                await Server(broker, ServerConfig(port=running.port)).run()
        assert (
            broker.topic_listeners
            == [running.engine._topic_changed, running.engine.coordinator._topic_changed][::-1]
            or len(broker.topic_listeners) == 2
        )
        running.request_shutdown()
    assert broker.topic_listeners == []

"""The one start-up of a broker from its settings (`serve_settings`), as `logbroker serve` and the
embedded brokers of `logbroker.testing` run it: listeners first, then the data directory; and the
settings it starts from (`Settings`): errors worded for people, storage that is one thing or the
other, every value read back from its owner, a short summary."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from logbroker.errors import InvalidConfigError
from logbroker.server.config import Settings
from logbroker.server.listeners import Listeners
from logbroker.testing import BrokerThread, run_broker


async def test_run_broker_binds_before_it_opens_the_data_directory(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        async with run_broker(data_dir=str(tmp_path / "data"), port=taken_port):
            pass
    assert raised.value.errno == errno.EADDRINUSE
    assert raised.value.strerror == f"native listener 127.0.0.1:{taken_port}: address already in use"
    assert not (tmp_path / "data").exists()


def test_broker_thread_names_the_kafka_listener_whose_port_is_taken(taken_port: int, tmp_path: Path) -> None:
    with (
        pytest.raises(OSError, match=f"Kafka listener 127.0.0.1:{taken_port}: address already in use"),
        BrokerThread(data_dir=str(tmp_path / "data"), kafka_port=taken_port),
    ):
        pass
    assert not (tmp_path / "data").exists()


async def test_listeners_bind_all_or_none(taken_port: int) -> None:
    config = Settings.from_mapping({"port": 0, "kafka_port": taken_port}).server
    with pytest.raises(OSError, match="Kafka listener"):
        await Listeners.bind(config)
    # The native listener it bound first was closed again: its port can be bound at once.
    listeners = await Listeners.bind(Settings.from_mapping({"port": 0, "kafka_port": 0}).server)
    assert [listener.name for listener in listeners] == ["native", "Kafka"]
    await listeners.aclose()


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": "9400"}, "setting 'port' takes an integer, not '9400'"),
        ({"idle_timeout": "5"}, "setting 'idle_timeout' takes a number, not '5'"),
        ({"max_connections": True}, "setting 'max_connections' takes an integer, not True"),
        ({"fsync": 0}, "setting 'fsync' takes a string, not 0"),
        ({"authenticate": "yes"}, "setting 'authenticate' takes true or false, not 'yes'"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_in_words(values: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfigError) as raised:
        Settings.from_mapping(values)
    assert raised.value.message == message


def test_an_error_in_a_config_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("max_connections = 0\n")
    with pytest.raises(InvalidConfigError) as raised:
        Settings.from_toml(str(config))
    assert raised.value.message == f"{config}: max_connections must be positive"


def test_memory_and_a_data_directory_from_one_source_exclude_each_other() -> None:
    with pytest.raises(InvalidConfigError, match="memory and data_dir exclude each other"):
        Settings.from_mapping({"memory": True, "data_dir": "x"})
    assert Settings.from_mapping({"memory": True, "data_dir": ""}).memory  # no directory named


def test_a_later_source_naming_a_data_directory_means_files() -> None:
    in_memory = Settings.from_mapping({"memory": True})
    files = Settings.from_mapping({"data-dir": "/srv/logbroker"}, in_memory)
    assert not files.memory and files.data_dir == "/srv/logbroker"
    assert Settings.from_mapping({"memory": True}, files).memory


def test_every_setting_reads_back_as_it_was_given() -> None:
    given = {
        "fsync": "interval:250",
        "auto_create_topics": True,
        "default_partitions": 3,
        "min_free_bytes": 0,
        "default_ack_timeout": 2.5,
        "default_max_deliveries": 4,
        "default_session_timeout": 12.0,
        "group_initial_delay": 0.0,
        "kafka_group_initial_delay": 0.5,
        "max_connections": 7,
        "idle_timeout": 1.5,
        "kafka_port": 0,
        "memory": True,
        "log_level": "debug",
    }
    settings = Settings.from_mapping(given)
    assert {name: settings.value(name) for name in given} == given
    assert set(given) <= set(Settings.names())
    with pytest.raises(InvalidConfigError, match="unknown setting"):
        settings.value("no_such_setting")


def test_the_summary_names_the_storage_and_only_the_settings_not_at_their_defaults(tmp_path: Path) -> None:
    settings = Settings.from_mapping(
        {
            "data_dir": str(tmp_path),
            "fsync": "never",
            "max_connections": 10,
            "quota_requests": 50.0,
            "port": 1,
        }
    )
    assert settings.summary() == [
        f"storage: files in {tmp_path} (fsync=never)",
        "settings not at their defaults: max_connections=10 quota_requests=50",
    ]
    assert Settings.from_mapping({"memory": True}).summary() == [
        "storage: memory (nothing survives a restart)",
        "settings: all at their defaults (`logbroker serve --help` lists them)",
    ]


async def test_an_embedded_broker_logs_the_same_start_up_as_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="logbroker")
    async with run_broker(data_dir=str(tmp_path / "data"), max_connections=10) as running:
        pass
    messages = [record.getMessage() for record in caplog.records]
    assert f"storage: files in {tmp_path / 'data'} (fsync=always)" in messages
    assert f"listeners: native {running.address}; plain TCP" in messages
    assert any("max_connections=10" in message for message in messages)
    assert "closed the data directory cleanly" in messages

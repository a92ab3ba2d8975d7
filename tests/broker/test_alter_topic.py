"""Topic settings changed at runtime (`Broker.alter_topic_config`, native AlterTopic, `logbroker
topics alter`): checked whole, saved, and in force at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import logbroker
from logbroker.broker.broker import Broker
from logbroker.errors import InvalidConfigError, InvalidTopicError, UnknownTopicOrPartitionError
from logbroker.testing import BrokerThread, run_broker
from tests.helpers import batch

NOW = 1_700_000_000_000


def test_set_and_put_back_survive_a_restart(tmp_path: Path) -> None:
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", 2, {"retention.ms": "1000"}, now_ms=NOW)
    info = broker.alter_topic_config("t", {"retention.bytes": "5000", "retention.ms": None})
    assert info.config["retention.bytes"] == "5000"
    assert info.config["retention.ms"] == str(7 * 24 * 3600 * 1000)  # back to the default
    broker.close()
    reopened = Broker.open(str(tmp_path), now_ms=NOW)
    config = reopened.describe_topic("t").config
    assert (config["retention.bytes"], config["retention.ms"]) == ("5000", str(7 * 24 * 3600 * 1000))
    reopened.close()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"segment.bytes": "10"}, "at least 1024"),
        ({"retention.mss": "1"}, "retention.mss"),
        ({"retention.mss": None}, "retention.mss"),
        ({"retention.ms": "soon"}, "retention.ms"),
    ],
)
def test_a_bad_change_changes_nothing(changes: dict[str, str | None], error: str) -> None:
    broker = Broker.in_memory(now_ms=NOW)
    broker.create_topic("t", config={"retention.ms": "1000"}, now_ms=NOW)
    with pytest.raises(InvalidConfigError, match=error):
        broker.alter_topic_config("t", {"retention.bytes": "5000", **changes})
    assert broker.describe_topic("t").config["retention.bytes"] == "-1"
    assert broker.describe_topic("t").config["retention.ms"] == "1000"


def test_validate_only_replace_and_refusals() -> None:
    broker = Broker.in_memory(now_ms=NOW)
    broker.create_topic("t", config={"retention.ms": "1000"}, now_ms=NOW)
    broker.alter_topic_config("t", {"retention.bytes": "5000"}, validate_only=True)
    assert broker.describe_topic("t").config["retention.bytes"] == "-1"
    broker.alter_topic_config("t", {"retention.bytes": "5000"}, replace=True)  # AlterConfigs: the whole set
    config = broker.describe_topic("t").config
    assert config["retention.bytes"] == "5000" and config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    with pytest.raises(InvalidTopicError, match="internal"):
        broker.alter_topic_config("__offsets", {"retention.ms": "1"})
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.alter_topic_config("missing", {"retention.ms": "1"})


def test_new_settings_are_in_force_at_once() -> None:
    broker = Broker.in_memory(now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    data = batch(1, value_size=600)
    broker.produce("t", 0, data, now_ms=NOW)
    broker.alter_topic_config("t", {"segment.bytes": "1024", "max.message.bytes": str(len(data))})
    broker.produce("t", 0, data, now_ms=NOW)  # rolls: two batches no longer fit a segment
    assert broker.describe_topic("t").partition_info[0].segments == 2
    with pytest.raises(logbroker.errors.MessageTooLargeError):
        broker.produce("t", 0, batch(1, value_size=700), now_ms=NOW)


async def test_native_client_alters() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        altered = await client.alter_topic("t", {"retention.ms": 60_000})
        assert altered.config["retention.ms"] == "60000"
        with pytest.raises(InvalidConfigError):
            await client.alter_topic("t", {"nonsense": 1})


def test_cli_alters() -> None:
    with BrokerThread() as broker:
        run = [sys.executable, "-m", "logbroker.cli", "topics"]
        boot = ["--bootstrap", broker.address]
        subprocess.run([*run, "create", "t", *boot], check=True, capture_output=True, timeout=60)
        done = subprocess.run(
            [
                *run,
                "alter",
                "t",
                "--config",
                "retention.bytes=1000000",
                "--delete-config",
                "retention.ms",
                *boot,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "retention.bytes=1000000" in done.stdout
        bad = subprocess.run(
            [*run, "alter", "t", "--config", "segment.bytes=1", *boot],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 1 and "segment.bytes" in bad.stderr and "Traceback" not in bad.stderr


def test_a_new_index_interval_applies_to_the_next_segment(tmp_path: Path) -> None:
    """Found in review: the partition directory kept the old interval for new segments."""
    broker = Broker.open(str(tmp_path), now_ms=NOW)
    broker.create_topic("t", now_ms=NOW)
    broker.produce("t", 0, batch(1, value_size=600), now_ms=NOW)
    broker.alter_topic_config("t", {"segment.bytes": "1024", "index.interval.bytes": "1"})
    for _ in range(5):  # the first rolls; then every batch gets an index entry
        broker.produce("t", 0, batch(1, value_size=100), now_ms=NOW)
    broker.close()
    [partition] = [p for p in tmp_path.iterdir() if p.name.startswith("t-")]
    indexes = sorted(partition.glob("*.index"))
    assert len(indexes) == 2
    batches = 6 - int(indexes[1].stem)  # in the second segment
    assert batches > 1
    assert indexes[1].stat().st_size == 8 * batches  # an entry (8 bytes) per batch, not per 4 KiB

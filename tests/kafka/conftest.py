"""A broker with its Kafka listener on a free port, in a background thread (Kafka clients block)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logbroker.kafka.apis import CREATE_TOPICS
from logbroker.testing import BrokerThread, RunningBroker
from tests.kafka.wire import Wire, create_topics_body

# Short timeouts, so group tests take seconds: no initial rebalance delay, sessions as short as
# the clients allow.
KAFKA_SETTINGS = {
    "kafka_port": 0,
    "kafka_group_initial_delay": 0.0,
    "kafka_min_session_timeout": 0.5,
}


@pytest.fixture
def kafka_broker() -> Iterator[RunningBroker]:
    with BrokerThread(**KAFKA_SETTINGS) as running:
        yield running


@pytest.fixture
def kafka_file_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    with BrokerThread(data_dir=str(tmp_path / "data"), **KAFKA_SETTINGS) as running:
        yield running


@pytest.fixture
def wire(kafka_broker: RunningBroker) -> Iterator[Wire]:
    """A raw Kafka connection to `kafka_broker`, with topic "t" of two partitions created."""
    with Wire(kafka_broker) as connection:
        connection.call(CREATE_TOPICS, 4, create_topics_body("t", partitions=2))
        yield connection

"""Hypothesis-made requests of every Kafka API and version served, sent to a live Kafka listener:
each is answered or its connection closed, and a canary on another connection is answered after
every one. (The native protocol's counterpart is in `tests/protocol/test_protocol.py` and
`tests/server/test_limits.py`.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbroker.kafka.apis import APIS, METADATA, Api
from logbroker.testing import BrokerThread, RunningBroker
from tests.kafka.test_codec import values
from tests.kafka.wire import Wire

CASES = [(api, version) for api in APIS.values() for version in range(api.min_version, api.max_version + 1)]


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with BrokerThread(kafka_port=0, kafka_group_initial_delay=0.0, auto_create_topics=True) as running:
        yield running


@pytest.fixture(scope="module")
def canary(broker: RunningBroker) -> Iterator[Wire]:
    with Wire(broker) as wire:
        yield wire


@pytest.mark.parametrize(("api", "version"), CASES, ids=[f"{a.name}-v{v}" for a, v in CASES])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_request_is_answered_or_closes_only_its_connection(
    broker: RunningBroker, canary: Wire, api: Api, version: int, data: st.DataObject
) -> None:
    body = data.draw(values(api.request, version, api.flexible(version)))
    with Wire(broker) as wire:
        wire.sock.settimeout(1.0)
        try:
            wire.sock.sendall(wire.frame(api, version, body))
            wire.answer(api, version)
        except (TimeoutError, ConnectionError, OSError):
            pass  # closed for a bad request, or still waiting (a JoinGroup, a long poll): fine
    answer = canary.call(METADATA, 4, {"topics": [], "allow_auto_topic_creation": False})
    assert answer["brokers"][0]["node_id"] == 0

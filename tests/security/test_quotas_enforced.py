"""Quotas enforced by the server (issue 7): a principal over its produce, fetch or request rate
is slowed down (Kafka's throttle_time_ms on the Kafka listener, a delay on the native one) while
a polite principal keeps its latency; connections per client address are capped."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import logbroker
from logbroker.errors import ConnectionClosedError
from logbroker.kafka.apis import FETCH, PRODUCE, SASL_AUTHENTICATE, SASL_HANDSHAKE
from logbroker.records import encode_batch
from logbroker.security.scram import ScramClient
from logbroker.testing import BrokerThread, RunningBroker, run_broker

from ..kafka.wire import Wire, fetch_body, produce_body
from .conftest import USERS, login_settings

MB = 1 << 20


@pytest.fixture
async def quota_broker(security_dir: str) -> AsyncIterator[RunningBroker]:
    settings = login_settings(security_dir, kafka_port=-1, quota_produce_bytes=float(MB))
    async with run_broker(**settings) as broker:
        broker.broker.create_topic("t", 1, now_ms=0)
        yield broker


async def test_a_greedy_producer_is_slowed_while_a_polite_one_keeps_its_latency(
    quota_broker: RunningBroker,
) -> None:
    latencies: list[float] = []
    greedy_took = 0.0
    chunk = [b"x" * 1000] * 250  # 250 kB batches

    async def greedy() -> None:
        nonlocal greedy_took
        async with await logbroker.connect(
            quota_broker.address, username="alice", password=USERS["alice"]
        ) as c:
            start = trio.current_time()
            for _ in range(16):  # 4 MB at 1 MB/s, with a 1 MB burst: at least 3 s
                await c.produce("t", chunk)
            greedy_took = trio.current_time() - start

    async def polite(done: trio.Event) -> None:
        async with await logbroker.connect(quota_broker.address, username="bob", password=USERS["bob"]) as c:
            while not done.is_set():
                start = time.perf_counter()
                await c.produce("t", [b"small"])
                latencies.append(time.perf_counter() - start)
                await trio.sleep(0.02)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(polite, done)
        await greedy()
        done.set()
    # Held to its quota: 4 MB less the 1 MB burst, at 1 MB/s, less the last batch's delay (served
    # before a next request that never comes).
    assert greedy_took >= 2.4
    assert len(latencies) > 50
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 0.5, f"the polite producer's p99 was {p99 * 1000:.0f} ms"


async def test_request_rate_quota(security_dir: str) -> None:
    settings = login_settings(security_dir, kafka_port=-1, quota_requests=50.0)
    async with run_broker(**settings) as broker:
        client = await logbroker.connect(broker.address, username="alice", password=USERS["alice"])
        async with client:
            start = trio.current_time()
            for _ in range(100):  # 50 in the burst, 50 more at 50/s
                await client.list_topics()
            assert trio.current_time() - start >= 0.9


async def test_connections_per_address_are_capped() -> None:
    async with run_broker(max_connections_per_ip=2) as broker:
        first = await logbroker.connect(broker.address)
        second = await logbroker.connect(broker.address)
        with pytest.raises(
            (ConnectionClosedError, logbroker.errors.BrokerUnavailableError),
            match=r"too many connections from 127\.0\.0\.1",
        ):
            await logbroker.connect(broker.address)
        await first.aclose()
        with trio.fail_after(5):
            while True:  # the broker notices the close when it reads the end of the stream
                try:
                    third = await logbroker.connect(broker.address)
                    break
                except logbroker.errors.BrokerUnavailableError:
                    await trio.sleep(0.01)
        await second.aclose()
        await third.aclose()


def kafka_login(wire: Wire, user: str) -> None:
    assert wire.call(SASL_HANDSHAKE, 1, {"mechanism": "SCRAM-SHA-256"})["error_code"] == 0
    scram = ScramClient("SCRAM-SHA-256", user, USERS[user])
    first = wire.call(SASL_AUTHENTICATE, 2, {"auth_bytes": scram.first()})
    final = wire.call(SASL_AUTHENTICATE, 2, {"auth_bytes": scram.final(first["auth_bytes"])})
    assert final["error_code"] == 0
    scram.verify(final["auth_bytes"])


def test_kafka_clients_are_told_throttle_time_ms(security_dir: str) -> None:
    settings = login_settings(
        security_dir, quota_produce_bytes=100_000.0, quota_fetch_bytes=100_000.0, auto_create_topics=True
    )
    with BrokerThread(**settings) as broker:
        batch = encode_batch([b"y" * 1000] * 150)  # 150 kB: over the 100 kB burst
        throttles: list[int] = []
        with Wire(broker) as wire:
            kafka_login(wire, "alice")
            trio.run(_create, broker)
            for _ in range(2):
                answer = wire.call(PRODUCE, 7, produce_body("k", 0, batch))
                assert answer["responses"][0]["partition_responses"][0]["error_code"] == 0
                throttles.append(answer["throttle_time_ms"])
            assert throttles[0] > 0 and throttles[1] > throttles[0]
            fetched = wire.call(FETCH, 11, {**fetch_body("k", 0, 0, 4 * MB), "max_bytes": 4 * MB})
            assert fetched["throttle_time_ms"] > 0
        with Wire(broker) as polite:  # another principal is not held back
            kafka_login(polite, "bob")
            answer = polite.call(PRODUCE, 7, produce_body("k", 0, encode_batch([b"z"])))
            assert answer["throttle_time_ms"] == 0


async def _create(broker: RunningBroker) -> Any:
    async with await logbroker.connect(broker.address, username="bob", password=USERS["bob"]) as c:
        await c.create_topic("k")

"""The client's timeouts (connection setup, each request, long polls on top) and what it says
when the port it reached is not a logbroker native port, over real sockets."""

from __future__ import annotations

import inspect
import time

import pytest
import trio
import trio.testing

import logbroker
import logbroker.sync
from logbroker.client.session import Session
from logbroker.errors import ConnectionClosedError, RequestTimedOutError, UnsupportedVersionError
from logbroker.protocol.messages import FetchPartition, HelloResponse
from logbroker.testing import run_broker
from tests.misbehaving import (
    AnswersHelloOnly,
    ServingThread,
    answers_http,
    answers_like_kafka,
    serving,
    silent,
)


def test_the_python_api_documents_its_defaults() -> None:
    for function in (logbroker.connect, Session):
        parameters = inspect.signature(function).parameters
        assert parameters["connect_timeout"].default == 10.0
        assert parameters["request_timeout"].default == 30.0


async def test_a_port_that_accepts_and_never_answers_fails_the_connect_after_connect_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with serving(silent) as address:
        start = trio.current_time()
        with pytest.raises(ConnectionClosedError) as failed:
            await logbroker.connect(address, connect_timeout=3)
        assert 3 <= trio.current_time() - start < 3.1
        assert failed.value.message == (
            f"cannot connect to {address}: it accepted the connection but sent no answer to the "
            "handshake (Hello) within 3 s (is it logbroker's native port?)"
        )


async def test_a_request_never_answered_times_out_drops_the_connection_and_the_next_call_reconnects(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = AnswersHelloOnly()
    async with serving(broker) as address, await logbroker.connect(address, request_timeout=5) as client:
        for attempt in (1, 2):
            start = trio.current_time()
            with pytest.raises(RequestTimedOutError) as timed_out:
                await client.list_topics()
            assert 5 <= trio.current_time() - start < 5.1
            assert timed_out.value.retriable
            assert timed_out.value.message == (
                f"the broker at {address} did not answer a ListTopics request within 5 s"
            )
            assert broker.connections == attempt  # each call after a timeout opens a new connection
        assert broker.unanswered == ["ListTopics", "ListTopics"]


async def test_a_timeout_fails_the_other_requests_on_the_dropped_connection_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    broker = AnswersHelloOnly()
    async with serving(broker) as address, await logbroker.connect(address, request_timeout=5) as client:
        errors: list[Exception] = []

        async def long_poll() -> None:
            try:
                await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=60_000)
            except ConnectionClosedError as exc:
                errors.append(exc)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(RequestTimedOutError):
                await client.list_topics()
        assert trio.current_time() - start < 5.1  # the fetch did not wait out its 65 s
        assert [e.args[0] for e in errors] == [
            f"connection to {address} dropped: a ListTopics request got no answer within 5 s"
        ]


async def test_a_long_poll_waits_its_own_max_wait_on_top_of_the_request_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address, request_timeout=1) as client:
        await client.create_topic("quiet")
        start = trio.current_time()
        response, _ = await client.fetch([FetchPartition("quiet", 0, 0)], max_wait_ms=10_000)
        assert response.partitions[0].size == 0 and trio.current_time() - start >= 10
        async with client.group_consumer("g", "quiet", max_wait_ms=5_000) as member:
            start = trio.current_time()
            assert await member.poll() == []
            assert trio.current_time() - start >= 5
    silent_broker = AnswersHelloOnly()
    async with (
        serving(silent_broker) as address,
        await logbroker.connect(address, request_timeout=1) as client,
    ):
        start = trio.current_time()
        with pytest.raises(RequestTimedOutError, match="a Fetch request within 11 s"):
            await client.fetch([FetchPartition("quiet", 0, 0)], max_wait_ms=10_000)
        assert 11 <= trio.current_time() - start < 11.1


async def test_an_http_server_is_named_as_one() -> None:
    async with serving(answers_http) as address:
        with pytest.raises(ConnectionClosedError) as failed:
            await logbroker.connect(address)
    assert failed.value.message == (
        f"{address} is an HTTP server (it answered in HTTP), not logbroker's native port"
    )


async def test_a_kafka_answer_is_recognised_as_a_kafka_listener() -> None:
    async with serving(answers_like_kafka) as address:
        with pytest.raises(ConnectionClosedError) as failed:
            await logbroker.connect(address)
    assert failed.value.message.startswith(f"{address} is a Kafka listener (it answered in Kafka's protocol)")


async def test_a_port_that_closes_at_once_asks_whether_it_is_the_native_port() -> None:
    async def closes(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with serving(closes) as address:
        with pytest.raises(ConnectionClosedError) as failed:
            await logbroker.connect(address)
    assert failed.value.message.startswith(f"the broker at {address} closed the connection before answering")


def test_the_blocking_client_times_out_too() -> None:
    with ServingThread(silent) as address:
        start = time.monotonic()
        with pytest.raises(ConnectionClosedError, match="no answer to the handshake"):
            logbroker.sync.connect(address, connect_timeout=0.5)
        assert time.monotonic() - start < 5
    with (
        ServingThread(AnswersHelloOnly()) as address,
        logbroker.sync.connect(address, request_timeout=0.5) as client,
    ):
        start = time.monotonic()
        with pytest.raises(
            RequestTimedOutError, match=f"the broker at {address} did not answer a ListTopics"
        ):
            client.list_topics()
        assert time.monotonic() - start < 5
        # a consume of a broker that never answers is an error, not "no records within timeout"
        with pytest.raises(RequestTimedOutError, match="DescribeTopic"):
            client.consume("t", timeout=0.1)


async def test_a_dry_run_reset_is_not_sent_to_a_broker_of_protocol_1() -> None:
    """Regression (review of issue 14): a broker speaking protocol 1 ignores `dry_run` and
    `create` and would move the offsets; the client refuses to ask it."""
    old = AnswersHelloOnly(HelloResponse(broker_version="0.0.9", protocol_version=1))
    async with serving(old) as address, await logbroker.connect(address) as client:
        for options in ({"dry_run": True}, {"dry_run": False, "create": False}):
            with pytest.raises(UnsupportedVersionError, match=r"logbroker 0\.0\.9\) cannot plan"):
                await client.plan_offsets("g", "t", "earliest", **options)
    assert old.unanswered == []  # nothing but the Hello was sent

"""`logbroker.testing`, its pytest fixtures, and the synchronous facade."""

from __future__ import annotations

import pytest

import logbroker
import logbroker.sync
from logbroker.errors import ConnectionClosedError, UnknownTopicOrPartitionError
from logbroker.testing import BrokerThread, RunningBroker, run_broker

pytest_plugins = ["pytester"]


async def test_run_broker_in_memory_and_on_disk(tmp_path: object) -> None:
    async with run_broker() as broker:
        assert broker.address.startswith("127.0.0.1:") and str(broker) == broker.address
        async with await logbroker.connect(broker.address) as client:
            assert client.broker_info is not None and client.broker_info.fsync == "memory"
    async with (
        run_broker(data_dir=str(tmp_path), fsync="never") as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("kept")
        await client.produce("kept", [b"x"])
    async with (
        run_broker(data_dir=str(tmp_path)) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        assert (await client.describe_topic("kept")).partitions[0].log_end_offset == 1


async def test_the_trio_fixture(logbroker_broker: RunningBroker) -> None:
    async with await logbroker.connect(logbroker_broker.address) as client:
        await client.create_topic("fixture")
        assert [t.name for t in await client.list_topics()] == ["fixture"]


def test_the_thread_fixture_and_the_sync_client(logbroker_thread: RunningBroker) -> None:
    with logbroker.sync.connect(logbroker_thread.address) as client:
        client.create_topic("orders", partitions=2)
        sent = client.produce("orders", [b"a", b"b", b"c"], keys=[b"k", b"k", b"other"])
        assert [m.partition for m in sent[:2]] == [sent[0].partition] * 2
        got = client.consume("orders", max_messages=3, timeout=5)
        assert sorted(m.value for m in got) == [b"a", b"b", b"c"]
        assert client.consume("orders", start="latest", timeout=0.2) == []
        assert [t.name for t in client.list_topics()] == ["orders"]
        with pytest.raises(UnknownTopicOrPartitionError):
            client.describe_topic("nope")
        client.delete_topic("orders")


def test_the_sync_client_reports_connection_errors() -> None:
    with pytest.raises(ConnectionClosedError):
        logbroker.sync.connect("127.0.0.1:1")


def test_broker_thread_as_a_context_manager() -> None:
    with (
        BrokerThread(default_partitions=3, auto_create_topics=True) as broker,
        logbroker.sync.connect(broker.address) as client,
    ):
        client.produce("auto", [b"x"])
        assert client.describe_topic("auto").partitions.__len__() == 3


def test_a_users_test_suite_gets_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_user="""
        import logbroker
        import logbroker.sync

        async def test_with_trio(logbroker_broker):
            async with await logbroker.connect(logbroker_broker.address) as client:
                await client.create_topic("mine")
                assert await client.produce("mine", [b"hello"]) == 0

        def test_without_trio(logbroker_thread):
            with logbroker.sync.connect(logbroker_thread.address) as client:
                client.create_topic("theirs")
                assert client.produce("theirs", [b"x"])[0].offset == 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)

"""The server end to end over loopback TCP: the client library against `run_broker`."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio
import trio.testing

import logbroker
from logbroker.errors import (
    ConnectionClosedError,
    CorruptRecordError,
    InvalidTopicError,
    LogbrokerError,
    MessageTooLargeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logbroker.protocol.messages import FetchPartition, Hello, HelloResponse, Produce
from logbroker.records.batch import HEADER, batch_crc
from logbroker.records.partitioner import partition_for_key
from logbroker.testing import run_broker
from tests.helpers import batch, offsets
from tests.server.conftest import RawClient


async def test_produce_and_consume_across_partitions_with_keys() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("orders", partitions=4)
        keys = [b"k%d" % (i % 10) for i in range(2000)]
        async with client.producer(linger_ms=1) as producer:
            deliveries = [await producer.send("orders", b"v%d" % i, key=keys[i]) for i in range(2000)]
        for i, delivery in enumerate(deliveries):
            assert delivery.result().partition == partition_for_key(keys[i], 4)
        seen: dict[int, list[int]] = {}
        values = set()
        async for message in client.consumer("orders"):
            seen.setdefault(message.partition, []).append(message.offset)
            values.add(message.value)
            if len(values) == 2000:
                break
        for partition, got in seen.items():
            assert got == list(range(len(got))), f"partition {partition} out of order or with gaps"
        assert values == {b"v%d" % i for i in range(2000)}


async def test_unkeyed_records_go_round_robin_batch_by_batch() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t", partitions=3)
        async with client.producer(linger_ms=1000, batch_bytes=300) as producer:
            deliveries = [await producer.send("t", b"x" * 50) for _ in range(30)]
        partitions = [d.result().partition for d in deliveries]
        assert set(partitions) == {0, 1, 2}
        changes = sum(1 for a, b in itertools.pairwise(partitions) if a != b)
        assert changes >= 5  # batch after batch, not record after record
        assert partitions[:4] == [0, 0, 0, 0]


async def test_admin_calls_and_their_errors() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        assert isinstance(client.broker_info, HelloResponse) and client.broker_info.fsync == "memory"
        created = await client.create_topic("t", 2, {"retention.ms": 60000})
        assert len(created.partitions) == 2 and created.config["retention.ms"] == "60000"
        with pytest.raises(TopicAlreadyExistsError):
            await client.create_topic("t")
        with pytest.raises(InvalidTopicError, match="invalid topic name"):
            await client.create_topic("no spaces")
        with pytest.raises(UnknownTopicOrPartitionError):
            await client.describe_topic("nope")
        assert [t.name for t in await client.list_topics()] == ["t"]
        await client.delete_topic("t")
        assert await client.list_topics() == []


async def test_bad_produces_get_clear_errors_and_the_connection_goes_on() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t", config={"max.message.bytes": 1000})
        with pytest.raises(MessageTooLargeError, match=r"max\.message\.bytes"):
            await client.produce("t", [b"x" * 2000])
        with pytest.raises(CorruptRecordError):
            await client.produce_batches("t", 0, b"\x00" * 100)
        damaged = bytearray(batch(2))
        damaged[-1] ^= 1
        with pytest.raises(CorruptRecordError, match="CRC"):
            await client.produce_batches("t", 0, bytes(damaged))
        with pytest.raises(UnknownTopicOrPartitionError):
            await client.produce("t", [b"x"], partition=5)
        assert await client.produce("t", [b"fine"]) == 0


async def test_an_unexpected_error_in_a_produce_fails_only_that_request(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_broker(data_dir=str(data)) as broker:
        (data / "foo-0").write_bytes(b"a stray file where a partition directory would go")
        async with await logbroker.connect(broker.address) as client:
            with pytest.raises(LogbrokerError, match="internal error"):
                await client.produce_batches("foo", 0, logbroker.records.encode_batch([b"x"]))
            await client.create_topic("ok")
            assert [t.name for t in await client.list_topics()] == ["ok"]


async def test_acks_zero_gets_no_response() -> None:
    async with run_broker(auto_create_topics=False) as broker, await RawClient.open(broker.port) as raw:
        await raw.send(Produce("t", 0, acks=0), batch(1))  # an unknown topic: no answer either
        await raw.send(Hello("after"))
        response = await raw.receive()
        assert response is not None and isinstance(response.message, HelloResponse)
        assert response.correlation_id == 2


async def test_a_consumer_names_the_offsets_of_a_batch_it_cannot_decode() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"fine"])
        good = logbroker.records.encode_batch([b"hello"])
        fields = list(HEADER.unpack_from(good))
        body = b"\xff" * 12  # a valid header and CRC around records that are not records
        fields[1] = 49 + len(body)
        raw = bytearray(HEADER.pack(*fields) + body)
        raw[17:21] = batch_crc(raw, 0, len(raw)).to_bytes(4, "big")
        await client.produce_batches("t", 0, bytes(raw))
        consumer = client.consumer("t")
        assert (await consumer.__anext__()).value == b"fine"
        with pytest.raises(LogbrokerError, match=r"offsets 1\.\.1 cannot be decoded.*start after offset 1"):
            await consumer.__anext__()


async def test_fetch_long_polls_until_data_arrives(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        started = trio.current_time()
        result: list[bytes] = []

        async def fetch() -> None:
            _, payload = await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=5000)
            result.append(payload)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            # Everything blocked, no time passed: the fetch was read and waits in the broker.
            await trio.testing.wait_all_tasks_blocked()
            assert not result
            await client.produce("t", [b"hello"])
        assert offsets(result[0]) == [0]
        assert trio.current_time() - started < 4


async def test_fetch_returns_after_max_wait_with_nothing(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        started = trio.current_time()
        response, payload = await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=3000)
        assert payload == b"" and 3 <= trio.current_time() - started < 4
        assert response.partitions[0].high_watermark == 0


async def test_fetch_reports_out_of_range_with_the_log_bounds() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"a", b"b"])
        response, _ = await client.fetch([FetchPartition("t", 0, 7), FetchPartition("nope", 0, 0)])
        bad, unknown = response.partitions
        assert (bad.error_code, bad.log_start_offset, bad.log_end_offset) == (1, 0, 2)
        assert unknown.error_code == 3


async def test_acks_wait_for_the_fsync_and_fsyncs_are_shared(tmp_path: object) -> None:
    async with (
        run_broker(data_dir=str(tmp_path)) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t", partitions=2)
        log0 = broker.broker.log("t", 0)
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(_produce_and_check_durable, client, log0, i)
        assert broker.engine.core.flusher.fsyncs < 50  # group commit: many acks per fsync
        assert log0.flushed_offset == 50


async def _produce_and_check_durable(client: logbroker.Client, log: object, i: int) -> None:
    offset = await client.produce("t", [b"%d" % i])
    assert log.flushed_offset > offset  # type: ignore[attr-defined]


async def test_pipelined_requests_beyond_the_in_flight_limit_are_all_answered() -> None:
    async with run_broker(max_in_flight=2) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(client.produce, "t", [b"x"])
        assert (await client.describe_topic("t")).partitions[0].log_end_offset == 40


async def test_graceful_shutdown_under_load(tmp_path: object) -> None:
    data_dir = str(tmp_path)
    acked: list[int] = []
    under_load = trio.Event()
    async with run_broker(data_dir=data_dir) as broker:
        client = await logbroker.connect(broker.address)
        await client.create_topic("t")

        async def produce_forever() -> None:
            try:
                while True:
                    acked.append(await client.produce("t", [b"x"]))
                    if len(acked) >= 20:
                        under_load.set()
            except logbroker.errors.LogbrokerError:
                pass

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(produce_forever)
            with trio.fail_after(30):
                await under_load.wait()  # acks flow, and four produces are in flight
            broker.server.request_shutdown()
        await client.aclose()
    from logbroker.broker.broker import Broker

    reopened = Broker.open(data_dir, now_ms=0)
    assert all(r.clean_shutdown for r in reopened.recovery)
    log = reopened.log("t", 0)
    stored = offsets(log.read(0, 1 << 30))
    assert set(acked) <= set(stored) and stored == list(range(len(stored)))
    assert len(acked) > 10
    reopened.close()


async def test_send_nowait_queues_without_waiting_or_says_it_would_block() -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        async with client.producer(max_buffered_bytes=1000) as producer:
            with pytest.raises(trio.WouldBlock):
                producer.send_nowait("t", b"x")  # the topic's partitions are not known yet
            first = await producer.send("t", b"x")
            queued = [producer.send_nowait("t", b"y" * 100) for _ in range(8)]
            with pytest.raises(trio.WouldBlock):
                for _ in range(20):
                    producer.send_nowait("t", b"z" * 100)  # over max_buffered_bytes
        assert first.result().offset == 0
        assert [d.result().offset for d in queued] == list(range(1, 9))


async def test_records_queued_behind_a_request_in_flight_go_in_one_request(tmp_path: Path) -> None:
    async with (
        run_broker(data_dir=str(tmp_path)) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t")
        requests = 0
        real = client.produce_batches

        async def counting(*args: object, **kwargs: object) -> int:
            nonlocal requests
            requests += 1
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        client.produce_batches = counting  # type: ignore[method-assign]
        async with client.producer(linger_ms=0) as producer:
            deliveries = [await producer.send("t", b"%d" % i) for i in range(300)]
        assert [d.result().offset for d in deliveries] == list(range(300))
        assert requests < 50


async def test_an_error_leaving_a_producer_block_at_once_comes_out_as_itself() -> None:
    # Regression: the sender task, started but not yet run, used to fail an assertion when the
    # block ended before it ran, hiding the caller's own exception.
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        with pytest.raises(trio.WouldBlock):
            async with client.producer() as producer:
                producer.send_nowait("t", b"x", key=b"k")  # partitions not known yet


async def test_the_client_closes_a_broken_connection_before_it_reconnects(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Regression: a client that reconnected after its connection broke left the old socket open
    # (a descriptor per reconnect, reported as unclosed sockets by the kill -9 campaign).
    async with run_broker(idle_timeout=5) as broker, await logbroker.connect(broker.address) as client:
        old = client._conn
        assert old is not None
        await trio.sleep(10)  # the broker closes the idle connection
        with pytest.raises(ConnectionClosedError):
            await client.list_topics()
        assert old.closed
        await client.list_topics()  # a new connection
        assert client._conn is not old
        assert old._stream.socket.fileno() == -1  # the old socket is closed

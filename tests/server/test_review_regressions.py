"""Regression tests for defects a review of the server, protocol and client found."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import logbroker
from logbroker.broker.broker import Broker, BrokerOptions
from logbroker.errors import LogbrokerError, LogReadOnlyError, MessageTooLargeError
from logbroker.protocol.connection import Request
from logbroker.protocol.messages import Fetch, FetchPartition, Hello
from logbroker.records.codec import encode_batch
from logbroker.server.flusher import Flusher
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.testing import ServeProcess, run_broker
from tests.server.conftest import RawClient


async def test_an_unexpected_error_in_a_produce_fails_only_that_request(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_broker(data_dir=str(data), auto_create_topics=True) as broker:
        (data / "foo-0").write_bytes(b"a stray file where a partition directory would go")
        async with await logbroker.connect(broker.address) as client:
            with pytest.raises(LogbrokerError, match="internal error"):
                await client.produce_batches("foo", 0, logbroker.records.encode_batch([b"x"]))
            await client.create_topic("ok")
            assert [t.name for t in await client.list_topics()] == ["ok"]


async def test_idle_timeout_still_applies_after_a_fetch(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker(idle_timeout=5) as broker, await RawClient.open(broker.port) as raw:
        await raw.send(Fetch([FetchPartition("nope", 0, 0)], max_wait_ms=10))
        assert await raw.receive() is not None
        started = trio.current_time()
        assert await raw.closed_by_server()
        assert trio.current_time() - started < 6


async def test_the_frame_timeout_restarts_when_a_frame_completes(autojump_clock: trio.abc.Clock) -> None:
    async with (
        run_broker(frame_timeout=1, idle_timeout=1000) as broker,
        await RawClient.open(broker.port) as raw,
    ):
        stream = b"".join(raw.protocol.send(Request(i + 1, Hello("x" * 150_000))) for i in range(40))

        async def drain() -> None:
            while await raw.stream.receive_some(1 << 20):
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            for i in range(0, len(stream), 100_000):  # steady progress, 4 s in all
                await raw.stream.send_all(stream[i : i + 100_000])
                await trio.sleep(0.1)
            assert len(broker.server.connections) == 1  # still served
            nursery.cancel_scope.cancel()


async def test_a_stalled_frame_is_cut_even_with_a_request_in_flight(autojump_clock: trio.abc.Clock) -> None:
    async with (
        run_broker(frame_timeout=3, idle_timeout=1000) as broker,
        await RawClient.open(broker.port) as raw,
    ):
        await raw.send(Fetch([FetchPartition("nope", 0, 0)], max_wait_ms=60_000))
        await raw.stream.send_all(b"\x00\x00")  # two bytes of a frame that never comes
        started = trio.current_time()
        assert await raw.closed_by_server()
        assert trio.current_time() - started < 4


async def test_pipelined_fetches_of_a_prompt_reader_are_not_mistaken_for_a_slow_one() -> None:
    async with (
        run_broker(max_output_bytes=1 << 20) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t")
        for _ in range(8):
            await client.produce("t", [b"x" * 100_000] * 5)
        sizes: list[int] = []

        async def fetch() -> None:
            _, payload = await client.fetch([FetchPartition("t", 0, 0, 64 << 20)], max_bytes=64 << 20)
            sizes.append(len(payload))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(fetch)
        assert len(sizes) == 4 and all(0 < size <= 2 << 20 for size in sizes)
        assert len(broker.server.connections) == 1


async def test_a_request_over_the_brokers_frame_limit_is_refused_by_the_client() -> None:
    async with (
        run_broker(max_frame_bytes=1 << 20) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t")
        async with client.producer() as producer:
            delivery = await producer.send("t", b"x" * (2 << 20))
            with pytest.raises(MessageTooLargeError, match="max_frame_bytes"):
                await delivery
        assert await client.produce("t", [b"small"]) == 0  # the connection was never dropped


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


def test_a_malformed_bootstrap_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "logbroker.cli", "topics", "list", "--bootstrap", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and "HOST:PORT" in result.stderr


def test_produce_gives_up_within_its_timeout_while_stdin_stays_open(tmp_path: Path) -> None:
    with ServeProcess() as server:
        address = server.address
        subprocess.run(
            [sys.executable, "-m", "logbroker.cli", "topics", "create", "t", "--bootstrap", address],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with subprocess.Popen(
            [sys.executable, "-m", "logbroker.cli", "produce", "t", "--bootstrap", address, "--timeout", "2"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as producer:
            assert producer.stdin is not None
            producer.stdin.write(b"one\n")
            producer.stdin.flush()
            time.sleep(1)
            server.kill()
            killed = time.monotonic()
            for _ in range(40):  # keep stdin open and busy
                try:
                    producer.stdin.write(b"more\n")
                    producer.stdin.flush()
                except BrokenPipeError:
                    break
                if producer.poll() is not None:
                    break
                time.sleep(0.2)
            code = producer.wait(timeout=30)
            elapsed = time.monotonic() - killed
            assert producer.stderr is not None
            errors = producer.stderr.read().decode()
            try:
                producer.stdin.close()
            except BrokenPipeError:
                pass
        assert code == 1 and "were acked" in errors
        assert elapsed < 2 + 5, f"gave up after {elapsed:.1f} s"


async def test_an_undecodable_batch_names_its_offsets() -> None:
    from logbroker.records.batch import HEADER, batch_crc

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


async def test_a_flush_that_cannot_start_makes_the_log_read_only_and_the_server_goes_on() -> None:
    # Found by the power-loss campaign: taking the descriptor for an fsync (`dup`) failed with
    # EBADF, and the OSError escaped the flusher and stopped the whole server. (EMFILE would do
    # the same on a real disk.)
    fs = FaultFileSystem()
    broker = Broker.open("/data", BrokerOptions(), fs=fs, now_ms=0)
    broker.create_topic("t", now_ms=0)
    broker.produce("t", 0, encode_batch([b"x"], timestamp=0), now_ms=0)
    flushed: list[object] = []
    flusher = Flusher(broker, on_flushed=flushed.append)
    fs.power_loss()  # every open handle is dead now
    await flusher.flush_round()
    log = broker.log("t", 0)
    assert log.read_only_reason is not None and flushed == [log]
    with pytest.raises(LogReadOnlyError):
        await flusher.wait_flushed(log, 1)

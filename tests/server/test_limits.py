"""Connection limits and abuse: every misbehaving connection is cut, everyone else is served."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logbroker
from logbroker.errors import ConnectionClosedError, MessageTooLargeError
from logbroker.protocol.connection import Request
from logbroker.protocol.frames import REQUEST, encode_frame
from logbroker.protocol.messages import ErrorResponse, Fetch, FetchPartition, Hello
from logbroker.testing import RunningBroker, run_broker
from tests.server.conftest import RawClient, length_prefix


async def canary(broker: RunningBroker) -> None:
    """A well-behaved client on its own connection still gets answers."""
    async with await logbroker.connect(broker.address) as client:
        topics = {t.name for t in await client.list_topics()}
        if "canary" not in topics:
            await client.create_topic("canary")
        await client.produce("canary", [b"still here"])


async def test_idle_connections_are_closed(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker(idle_timeout=30) as broker, await RawClient.open(broker.port) as raw:
        started = trio.current_time()
        assert await raw.closed_by_server()
        assert 30 <= trio.current_time() - started < 31
        await canary(broker)


async def test_a_connection_with_a_request_in_flight_is_not_idle(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker(idle_timeout=5) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        response, _ = await client.fetch([FetchPartition("t", 0, 0)], max_wait_ms=20_000)
        assert response.partitions[0].error_code == 0  # the long poll outlived the idle timeout


async def test_the_idle_timeout_still_applies_after_a_fetch(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker(idle_timeout=5) as broker, await RawClient.open(broker.port) as raw:
        await raw.send(Fetch([FetchPartition("nope", 0, 0)], max_wait_ms=10))
        assert await raw.receive() is not None
        started = trio.current_time()
        assert await raw.closed_by_server()
        assert trio.current_time() - started < 6


async def test_slowloris_frames_are_cut(autojump_clock: trio.abc.Clock) -> None:
    async with (
        run_broker(frame_timeout=10, idle_timeout=1000) as broker,
        await RawClient.open(broker.port) as raw,
    ):
        frame = raw.protocol.send(logbroker.protocol.connection.Request(1, Hello("slow")))  # type: ignore[attr-defined]
        started = trio.current_time()
        closed = False
        for byte in frame[:-1]:  # one byte every 2 s: each receive returns, the frame never ends
            try:
                await raw.stream.send_all(bytes([byte]))
            except trio.BrokenResourceError:
                closed = True
                break
            await trio.sleep(2)
        assert closed or await raw.closed_by_server()
        assert trio.current_time() - started <= 12
        await canary(broker)


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


async def test_a_frame_over_the_limit_is_refused_from_its_prefix() -> None:
    async with run_broker(max_frame_bytes=1 << 20) as broker, await RawClient.open(broker.port) as raw:
        await raw.stream.send_all(length_prefix(2**31 - 1))  # nothing more follows
        with trio.fail_after(5):
            assert await raw.closed_by_server()
        await canary(broker)


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


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        bytes.fromhex("16030100f4010000f00303") + b"\x00" * 240,  # a TLS ClientHello
        struct.pack(">I", 3) + b"abc",
        struct.pack(">IBIHI", 11, 7, 1, 0, 0),
        b"\xff" * 64,
    ],
    ids=["http", "tls", "short", "bad-kind", "ff"],
)
async def test_garbage_closes_only_its_own_connection(garbage: bytes) -> None:
    async with run_broker() as broker, await RawClient.open(broker.port) as raw:
        await raw.stream.send_all(garbage)
        with trio.fail_after(5):
            assert await raw.closed_by_server()
        await canary(broker)


async def test_undecodable_requests_are_answered_and_the_connection_goes_on() -> None:
    async with run_broker() as broker, await RawClient.open(broker.port) as raw:
        await raw.stream.send_all(
            encode_frame(REQUEST, 9, 99, b"{}") + encode_frame(REQUEST, 10, 5, b"{bad json")
        )
        first, second = await raw.receive(), await raw.receive()
        assert first is not None and second is not None
        assert (first.correlation_id, first.message.error_code) == (9, 35)  # type: ignore[attr-defined]
        assert (second.correlation_id, second.message.error_code) == (10, 42)  # type: ignore[attr-defined]
        await raw.send(Hello("still"))
        third = await raw.receive()
        assert third is not None and third.message.error_code == 0  # type: ignore[attr-defined]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=200), frames=st.integers(0, 3))
async def test_fuzzed_bytes_never_hurt_the_server(data: bytes, frames: int) -> None:
    async with run_broker(max_frame_bytes=4096) as broker:
        async with await RawClient.open(broker.port) as raw:
            for i in range(frames):
                await raw.send(Hello(f"before-{i}"))
            try:
                await raw.stream.send_all(data)
            except trio.BrokenResourceError:
                pass
            with trio.move_on_after(0.2):
                await raw.closed_by_server()
        await canary(broker)


async def test_too_many_connections_are_refused_cleanly() -> None:
    async with run_broker(max_connections=2) as broker:
        async with await RawClient.open(broker.port) as first, await RawClient.open(broker.port) as second:
            for raw in (first, second):  # both are served
                await raw.send(Hello("x"))
                assert (await raw.receive()) is not None
            async with await RawClient.open(broker.port) as third:
                refusal = await third.receive()
                assert refusal is not None and refusal.correlation_id == 0
                assert isinstance(refusal.message, ErrorResponse)
                assert "too many connections" in (refusal.message.error_message or "")
                assert await third.closed_by_server()
            with pytest.raises(ConnectionClosedError, match="too many connections"):
                await logbroker.connect(broker.address)
        with trio.fail_after(5):
            await broker.server.wait_connections(0)
        await canary(broker)  # room again


async def test_a_reader_that_never_reads_is_cut_off(autojump_clock: trio.abc.Clock) -> None:
    async with run_broker(max_output_bytes=1 << 20, send_timeout=10) as broker:
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic("t")
            for _ in range(16):
                await client.produce("t", [b"x" * 100_000] * 5)
        async with await RawClient.open(broker.port) as raw:
            request = Fetch([FetchPartition("t", 0, 0, 8 << 20)], max_bytes=8 << 20)
            for _ in range(40):  # ~300 MB of responses it will never read
                try:
                    await raw.send(request)
                except trio.BrokenResourceError:
                    break
            with trio.fail_after(60):
                await broker.server.wait_connections(0)
        await canary(broker)


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


@pytest.mark.parametrize("listener", ["native", "kafka"])
async def test_a_peer_resetting_its_connection_is_not_an_error(
    listener: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: a reset reached the connection wrapped in the nursery's exception group, and
    # was logged as an unexpected error with a traceback.
    caplog.set_level(logging.DEBUG, logger="logbroker.connections")
    lost = trio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "closed: connection lost" in record.getMessage():
                lost.set()

    watch = Watch()
    logging.getLogger("logbroker.connections").addHandler(watch)
    async with run_broker(kafka_port=0) as broker:
        port = broker.port if listener == "native" else broker.server.kafka_port
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        await sock.send(b"\x00\x00\x00\x10abc")  # part of a frame: the server is reading
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with a zero linger: a reset
        with trio.fail_after(5):
            await lost.wait()
        await canary(broker)
    logging.getLogger("logbroker.connections").removeHandler(watch)
    assert "unexpected error" not in caplog.text

"""A client on the wrong listener: what the broker logs, and answers in the client's protocol."""

from __future__ import annotations

import logging
import struct

import pytest
import trio

import logbroker
from logbroker.errors import ConnectionClosedError
from logbroker.protocol.connection import Connection, Response, Role
from logbroker.protocol.messages import ErrorResponse
from logbroker.protocol.sniff import Wire
from logbroker.server.wrong_listener import Ports, wrong_listener
from logbroker.testing import run_broker
from tests.protocol.test_sniff import RDKAFKA, kafka_request, native_request, tls_client_hello

PORTS = Ports(native=9400, kafka=9092)


def api_versions_answer(data: bytes) -> tuple[int, int, int]:
    """(correlation id, error code, number of APIs) of an ApiVersions answer with a v0 body."""
    size, cid, error, count = struct.unpack(">iihi", data)
    assert size == len(data) - 4
    return cid, error, count


def test_a_kafka_client_on_the_native_port_is_told_no_broker_is_there_and_logged_with_the_kafka_port() -> (
    None
):
    verdict = wrong_listener(Wire.NATIVE, Wire.KAFKA, RDKAFKA, "127.0.0.1", 9400, PORTS)
    assert verdict.level == logging.WARNING
    assert verdict.message == (
        "a Kafka client (client id 'rdkafka') connected to the native port 127.0.0.1:9400; "
        "Kafka's listener is 127.0.0.1:9092"
    )
    # ApiVersions with BROKER_NOT_AVAILABLE and no APIs, on the request's correlation id
    assert api_versions_answer(b"".join(verdict.answer)) == (1, 8, 0)


def test_without_a_kafka_listener_the_log_says_how_to_start_one() -> None:
    verdict = wrong_listener(Wire.NATIVE, Wire.KAFKA, RDKAFKA, "::1", 9400, Ports(native=9400))
    assert (
        "the native port [::1]:9400; the Kafka listener is off: start serve with --kafka-port"
        in verdict.message
    )


def test_a_kafka_request_other_than_api_versions_gets_no_answer() -> None:
    metadata = kafka_request(3, 1, 4, "old-client", b"\x00\x00\x00\x00")
    verdict = wrong_listener(Wire.NATIVE, Wire.KAFKA, metadata, "127.0.0.1", 9400, PORTS)
    assert "client id 'old-client'" in verdict.message and verdict.answer == []
    cut = wrong_listener(Wire.NATIVE, Wire.KAFKA, RDKAFKA[:15], "127.0.0.1", 9400, PORTS)
    assert cut.message.startswith("a Kafka client connected") and cut.answer == []


def test_a_native_client_on_the_kafka_port_is_refused_with_the_native_port_in_its_own_protocol() -> None:
    verdict = wrong_listener(Wire.KAFKA, Wire.NATIVE, native_request(), "127.0.0.1", 9092, PORTS)
    assert verdict.level == logging.WARNING
    assert verdict.message == (
        "a logbroker client (client id 'cli') connected to the Kafka port 127.0.0.1:9092; "
        "logbroker's own port is 127.0.0.1:9400"
    )
    client = Connection(Role.CLIENT, 1 << 20)
    client.receive_data(b"".join(verdict.answer))
    assert client.next_event() == Response(
        0,
        ErrorResponse(
            error_code=42, error_message="it is a Kafka listener; logbroker's own port is 127.0.0.1:9400"
        ),
    )


def test_tls_on_a_plain_port_is_a_warning_and_http_only_information() -> None:
    tls = wrong_listener(Wire.NATIVE, Wire.TLS, tls_client_hello(), "127.0.0.1", 9400, PORTS)
    assert tls.level == logging.WARNING and "takes plain TCP" in tls.message and tls.answer == []
    http = wrong_listener(Wire.KAFKA, Wire.HTTP, b"GET / HTTP/1.1\r\n", "127.0.0.1", 9092, PORTS)
    assert http.level == logging.INFO and "HTTP client connected to the Kafka port" in http.message


async def test_the_native_client_on_the_kafka_port_says_where_the_native_port_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with run_broker(kafka_port=0) as broker:
        kafka = broker.kafka_address
        with pytest.raises(ConnectionClosedError) as refused:
            await logbroker.connect(kafka, client_id="lost")
        assert refused.value.message == (
            f"the broker at {kafka} refused the connection: it is a Kafka listener; "
            f"logbroker's own port is {broker.address}"
        )
        async with await logbroker.connect(broker.address) as client:  # the broker is unharmed
            assert await client.list_topics() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"a logbroker client (client id 'lost') connected to the Kafka port {kafka}; "
        f"logbroker's own port is {broker.address}" in w
        for w in warnings
    ), warnings


async def test_a_kafka_client_on_the_native_port_gets_an_api_versions_error_then_the_connection_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with run_broker(kafka_port=0) as broker:
        stream = await trio.open_tcp_stream("127.0.0.1", broker.port)
        async with stream:
            await stream.send_all(RDKAFKA)
            received = b""
            with trio.fail_after(10):
                while data := await stream.receive_some(1 << 16):
                    received += data
        assert api_versions_answer(received) == (1, 8, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        sum(
            f"connected to the native port {broker.address}; Kafka's listener is {broker.kafka_address}" in w
            for w in warnings
        )
        == 1
    )

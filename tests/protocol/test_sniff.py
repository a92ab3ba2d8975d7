"""Telling protocols apart by a connection's first bytes (`logbroker.protocol.sniff`): each
example whole, cut short at every length, and with more bytes behind it."""

from __future__ import annotations

import ssl
import struct

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from logbroker.kafka.protocol import KafkaProtocol, UnsupportedRequest
from logbroker.protocol.connection import Connection, Request, Response, Role
from logbroker.protocol.messages import Fetch, Hello, HelloResponse, ListTopicsResponse
from logbroker.protocol.sniff import Wire, classify_answer, classify_request


def native_request(message: object = None, cid: int = 1) -> bytes:
    return Connection(Role.CLIENT, 1 << 20).send(Request(cid, message or Hello(client_id="cli")))


def kafka_request(api_key: int, version: int, cid: int, client_id: str | None, body: bytes = b"") -> bytes:
    header = struct.pack(">hhi", api_key, version, cid)
    if client_id is None:
        header += struct.pack(">h", -1)
    else:
        header += struct.pack(">h", len(client_id.encode())) + client_id.encode()
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def tls_client_hello() -> bytes:
    """The first bytes a real TLS client sends."""
    client = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="x"
    )
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def tls_server_hello() -> bytes:
    """What a real TLS server answers to a client's hello."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("x").configure_cert(context)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(tls_client_hello())
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return outgoing.read()


# librdkafka's first request: ApiVersions v3 with its software name and version.
RDKAFKA = kafka_request(18, 3, 1, "rdkafka", b"\x0blibrdkafka\x062.0.2\x00")
REQUESTS = [
    (native_request(), Wire.NATIVE),
    (native_request(Fetch([], max_wait_ms=100), cid=0x7FFFFFFF), Wire.NATIVE),
    (RDKAFKA, Wire.KAFKA),
    (kafka_request(18, 0, 7, None), Wire.KAFKA),  # the smallest: 14 bytes
    (kafka_request(3, 1, 2, "kafka-python"), Wire.KAFKA),
    (tls_client_hello(), Wire.TLS),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Wire.HTTP),
    (b"POST /v1 HTTP/1.1\r\n", Wire.HTTP),
    (b"\x00\x00\x00\x20\x07" + bytes(40), Wire.UNKNOWN),  # a frame of kind 7
    (b"hello there, broker\n", Wire.UNKNOWN),
    (struct.pack(">IBIHI", 11, 1, 1, 0, 12), Wire.UNKNOWN),  # a header longer than its frame
    (kafka_request(18, 3000, 1, "x"), Wire.UNKNOWN),  # no Kafka version is that high
]


@pytest.mark.parametrize(("data", "wire"), REQUESTS)
def test_a_request_is_told_apart_whole_cut_short_and_with_more_behind_it(data: bytes, wire: Wire) -> None:
    assert classify_request(data) is wire
    assert classify_request(data + native_request()) is wire
    assert classify_request(data[:15]) is wire  # never more than 15 bytes are needed
    for length in range(len(data)):  # a shorter prefix says the same, or that it needs more
        assert classify_request(data[:length]) in (None, wire)


@given(st.integers(0, 0xFFFFFFFF), st.text(max_size=40))
def test_every_native_hello_is_native(cid: int, client_id: str) -> None:
    assert classify_request(native_request(Hello(client_id=client_id), cid=cid)) is Wire.NATIVE


@given(
    st.integers(0, 99), st.integers(0, 20), st.integers(-(2**31), 2**31 - 1), st.none() | st.text(max_size=40)
)
def test_every_kafka_request_header_is_kafka(
    api_key: int, version: int, cid: int, client_id: str | None
) -> None:
    assert classify_request(kafka_request(api_key, version, cid, client_id, b"\x00" * 8)) is Wire.KAFKA


def kafka_answer_to(request: bytes) -> bytes:
    """What a Kafka broker answers to `request`: Kafka's parser reads its header, and the answer
    carries the correlation id it read."""
    protocol = KafkaProtocol(1 << 20)
    protocol.receive_data(request)
    event = protocol.next_event()
    assert isinstance(event, UnsupportedRequest) and event.api_key == 256  # a native Hello, read as Kafka
    return protocol.refuse_api_versions(event.correlation_id, 35)


HELLO = native_request()
ANSWERS = [
    (Connection(Role.SERVER, 1 << 20).send(Response(1, HelloResponse(broker_version="x"))), Wire.NATIVE),
    (Connection(Role.SERVER, 1 << 20).send(Response(0, ListTopicsResponse(error_code=8))), Wire.NATIVE),
    (kafka_answer_to(HELLO), Wire.KAFKA),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", Wire.HTTP),
    (tls_server_hello(), Wire.TLS),
    (b"SSH-2.0-OpenSSH_9.6\r\n", Wire.UNKNOWN),
]


@pytest.mark.parametrize(("data", "wire"), ANSWERS)
def test_an_answer_is_told_apart_whole_cut_short_and_with_more_behind_it(data: bytes, wire: Wire) -> None:
    assert classify_answer(HELLO, data) is wire
    assert classify_answer(HELLO, data + b"\x00" * 20) is wire
    assert classify_answer(HELLO, data[:8]) is wire  # never more than 8 bytes are needed
    for length in range(len(data)):
        assert classify_answer(HELLO, data[:length]) in (None, wire)


def test_a_kafka_answer_is_recognised_by_the_correlation_id_kafka_read_from_the_request() -> None:
    other = native_request(cid=5)
    assert classify_answer(other, kafka_answer_to(other)) is Wire.KAFKA
    assert classify_answer(HELLO, kafka_answer_to(other)) is Wire.UNKNOWN

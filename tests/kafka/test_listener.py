"""The Kafka listener as a server: framing limits, unserved APIs, answers in request order and
seeing the requests before them, fetch limits, and one bad client never disturbing the others."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient

from logbroker.kafka.apis import (
    API_VERSIONS,
    CREATE_TOPICS,
    FETCH,
    JOIN_GROUP,
    LIST_OFFSETS,
    METADATA,
    PRODUCE,
)
from logbroker.kafka.types import Reader, Writer
from logbroker.records.codec import encode_batch
from logbroker.testing import BrokerThread, RunningBroker
from tests.kafka.conftest import KAFKA_SETTINGS
from tests.kafka.wire import Wire, create_topics_body, fetch_body, list_offsets_body, produce_body, produced


def connect(broker: RunningBroker) -> socket.socket:
    host, port = broker.kafka_address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def frame(
    api_key: int, version: int, correlation_id: int, body: bytes = b"", client_id: bytes = b"t"
) -> bytes:
    data = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id + body
    return struct.pack(">i", len(data)) + data


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    return exactly(struct.unpack(">i", exactly(4))[0])


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def metadata_body() -> bytes:
    writer = Writer()
    METADATA.request.encode(writer, {"topics": None, "allow_auto_topic_creation": False}, 4, False)
    return writer.getvalue()


def test_an_api_versions_request_of_a_future_version_gets_the_fallback(kafka_broker: RunningBroker) -> None:
    with connect(kafka_broker) as sock:
        sock.sendall(frame(API_VERSIONS.key, 9, 5))
        answer = read_frame(sock)
        reader = Reader(answer)
        assert reader.int32() == 5
        body = API_VERSIONS.response.decode(reader, 0, False)
        assert body["error_code"] == 35
        assert {"api_key": 18, "min_version": 0, "max_version": 4} in body["api_keys"]
        # The connection stays usable: the client retries at a version served.
        sock.sendall(frame(API_VERSIONS.key, 3, 6, b"\x00\x01\x01\x00"))  # header tags; two empty strings
        assert struct.unpack_from(">ih", read_frame(sock)) == (6, 0)


@pytest.mark.parametrize(
    "bad",
    [
        frame(57, 0, 1),  # an API not served
        frame(METADATA.key, 12, 1, metadata_body()),  # a version not served
        frame(METADATA.key, 4, 1, b"\xff\xff"),  # a body that does not decode
        struct.pack(">i", 1 << 30),  # a frame over the limit (refused from its size)
        struct.pack(">i", -1),
        struct.pack(">i", 3) + b"abc",  # too short for a header
    ],
    ids=["unknown-api", "unknown-version", "bad-body", "oversized", "negative", "short"],
)
def test_a_bad_request_closes_that_connection_only(kafka_broker: RunningBroker, bad: bytes) -> None:
    with connect(kafka_broker) as good, connect(kafka_broker) as evil:
        evil.sendall(bad)
        assert closed(evil)
        good.sendall(frame(METADATA.key, 4, 7, metadata_body()))
        reader = Reader(read_frame(good))
        assert reader.int32() == 7
        assert METADATA.response.decode(reader, 4, False)["brokers"][0]["node_id"] == 0
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)  # a real client still works
    assert "__offsets" in admin.list_topics()
    admin.close()


def test_answers_come_in_request_order_across_a_long_poll() -> None:
    # A fetch that waits 1 s, then a metadata request: the metadata answer may not overtake it.
    with BrokerThread(kafka_port=0, auto_create_topics=True) as broker, connect(broker) as sock:
        fetch = Writer()
        sock.sendall(frame(METADATA.key, 4, 1, metadata_body()))
        read_frame(sock)
        FETCH.request.encode(
            fetch,
            {
                "max_wait_ms": 1000,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "isolation_level": 0,
                "topics": [
                    {
                        "topic": "__offsets",
                        "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}],
                    }
                ],
            },
            11,
            False,
        )
        sock.sendall(frame(FETCH.key, 11, 2, fetch.getvalue()) + frame(METADATA.key, 4, 3, metadata_body()))
        first, second = read_frame(sock), read_frame(sock)
        assert struct.unpack_from(">i", first)[0] == 2 and struct.unpack_from(">i", second)[0] == 3


def test_requests_pipelined_behind_a_produce_see_its_records(tmp_path: Path) -> None:
    # ListOffsets and Fetch pipelined right behind an acks=all produce were answered from before
    # the produce (they were worked out when read, while the produce waited for its fsync).
    with BrokerThread(data_dir=str(tmp_path), **KAFKA_SETTINGS) as broker, Wire(broker) as wire:
        wire.call(CREATE_TOPICS, 4, create_topics_body("p"))
        for n in range(5):
            wire.sock.sendall(
                wire.frame(PRODUCE, 7, produce_body("p", 0, encode_batch([b"x"])))
                + wire.frame(LIST_OFFSETS, 2, list_offsets_body("p", 0))
                + wire.frame(FETCH, 11, fetch_body("p", 0, 0))
            )
            base = wire.answer(PRODUCE, 7)["responses"][0]["partition_responses"][0]["base_offset"]
            listed = wire.answer(LIST_OFFSETS, 2)["topics"][0]["partitions"][0]["offset"]
            fetched = wire.answer(FETCH, 11)["responses"][0]["partitions"][0]["high_watermark"]
            assert base == n and listed == fetched == n + 1


def test_a_fetch_with_a_zero_partition_limit_still_returns_the_first_batch(wire: Wire) -> None:
    produced(wire, encode_batch([b"first"]))
    answer = wire.call(FETCH, 11, fetch_body("t", 0, 0, partition_max_bytes=0))
    assert answer["responses"][0]["partitions"][0]["records"]  # KIP-74: the first batch, whole


def join_group_frame(correlation_id: int, protocols: list[dict[str, object]]) -> bytes:
    body = Writer()
    request = {
        "group_id": "g",
        "session_timeout_ms": 10_000,
        "rebalance_timeout_ms": 10_000,
        "member_id": "",
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocols": protocols,
    }
    JOIN_GROUP.request.encode(body, request, 5, False)
    return frame(JOIN_GROUP.key, 5, correlation_id, body.getvalue())


def join_group(
    sock: socket.socket, correlation_id: int, protocols: list[dict[str, object]]
) -> dict[str, Any]:
    sock.sendall(join_group_frame(correlation_id, protocols))
    reader = Reader(read_frame(sock))
    assert reader.int32() == correlation_id
    return JOIN_GROUP.response.decode(reader, 5, False)


def test_a_join_offering_no_protocol_is_refused_and_groups_go_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: a JoinGroup with no protocols was let in, and the group timer then raised and
    # stopped the whole server.
    with BrokerThread(kafka_port=0, kafka_group_initial_delay=0.05) as broker, connect(broker) as sock:
        assert join_group(sock, 1, [])["error_code"] == 23  # INCONSISTENT_GROUP_PROTOCOL
        # Whatever else goes wrong in the group timer, it logs and goes on.
        expire = broker.engine.coordinator.expire
        failures = iter([RuntimeError("injected")])

        def flaky_expire(*args: Any) -> set[str]:
            for failure in failures:
                raise failure
            return expire(*args)

        monkeypatch.setattr(broker.engine.coordinator, "expire", flaky_expire)
        answer = join_group(
            sock, 2, [{"name": "range", "metadata": b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"}]
        )
        assert (answer["error_code"], answer["generation_id"]) == (0, 1)
    assert "unexpected error in the group timer" in caplog.text


def test_answers_held_behind_a_waiting_request_count_against_the_output_budget() -> None:
    # Regression: fetch answers finished behind a JoinGroup waiting for its rebalance were not
    # counted as output, so each new fetch took the whole budget again; the broker held many
    # budgets' worth, then closed the (promptly reading) client as a slow reader.
    budget = 64 << 10
    with BrokerThread(
        kafka_port=0,
        auto_create_topics=True,
        kafka_group_initial_delay=0.5,
        max_output_bytes=budget,
        max_frame_bytes=128 << 10,
    ) as broker:
        producer = Producer({"bootstrap.servers": broker.kafka_address, "batch.size": 16000})
        for _ in range(400):
            producer.produce("big", b"x" * 1000, partition=0)
        assert producer.flush(10) == 0
        with connect(broker) as sock:
            protocols = [{"name": "range", "metadata": b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"}]
            sock.sendall(join_group_frame(1, protocols))
            fetch = Writer()
            partition = {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
            request = {
                "max_wait_ms": 0,
                "min_bytes": 0,
                "max_bytes": 1 << 20,
                "isolation_level": 0,
                "topics": [{"topic": "big", "partitions": [partition]}],
            }
            FETCH.request.encode(fetch, request, 11, False)
            sock.sendall(b"".join(frame(FETCH.key, 11, 2 + i, fetch.getvalue()) for i in range(20)))
            answers = [read_frame(sock) for _ in range(21)]  # the connection is not closed
    assert [struct.unpack_from(">i", a)[0] for a in answers] == list(range(1, 22))
    assert all(len(a) < 2 * budget for a in answers[1:])

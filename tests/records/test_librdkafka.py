"""Compressed batches against librdkafka (confluent-kafka), both ways, through its mock cluster.

librdkafka's in-process mock cluster listens on loopback and speaks Kafka's protocol. To see the
bytes librdkafka writes, its producer sends to the mock cluster and a raw Fetch (v4) reads the
stored batches back; to see it read ours, a raw Produce (v3) stores our batch and librdkafka's
consumer decodes it. librdkafka carries its own snappy and lz4 code (it writes raw snappy, not
xerial) and libzstd, so it is independent of the libraries logbroker uses.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from logbroker.records import Compression, Record, decode_batch, encode_batch, iter_batches

CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
T0 = 1_700_000_000_000
QUIET = {"log_level": 3}  # the mock cluster announces itself at level 5


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The bootstrap address of a librdkafka mock cluster (it lives as long as its owner)."""
    owner = Producer({"test.mock.num.brokers": 1, **QUIET})
    broker = next(iter(owner.list_topics(timeout=10).brokers.values()))
    yield f"{broker.host}:{broker.port}"
    owner.flush(10)


def create_topic(cluster: str, name: str) -> None:
    # The mock cluster creates a topic when a client asks for its metadata (its CreateTopics
    # waits for a controller the mock does not name).
    metadata = Producer({"bootstrap.servers": cluster, **QUIET}).list_topics(name, timeout=10)
    assert 0 in metadata.topics[name].partitions


def rows(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]], int]]:
    """Records that compress well (librdkafka sends a batch raw when compressing does not pay)."""
    return [
        (
            b"customer-%d" % (i % 5),
            b"order %d created at the eu-west store; " % i * 4,
            [("n", b"%d" % i)],
            T0 + i,
        )
        for i in range(n)
    ]


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def kafka_request(address: str, api_key: int, version: int, body: bytes) -> bytes:
    """One request with a v1 header, its response body (after the correlation id) back."""
    host, port = address.rsplit(":", 1)
    message = struct.pack(">hhi", api_key, version, 1) + _string("logbroker-test") + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(message)) + message)
        with sock.makefile("rb") as stream:
            (size,) = struct.unpack(">i", stream.read(4))
            response = stream.read(size)
    assert len(response) == size
    return response[4:]


def fetch_batches(address: str, topic: str, offset: int) -> bytes:
    """Fetch v4 from `offset` of partition 0: record batches exactly as stored (maybe not all)."""
    body = struct.pack(">iiiib", -1, 0, 0, 1 << 24, 0) + struct.pack(">i", 1) + _string(topic)
    body += struct.pack(">iiqi", 1, 0, offset, 1 << 24)
    response = kafka_request(address, 1, 4, body)
    pos = 4 + 4  # throttle_time_ms, responses count (1)
    (name_len,) = struct.unpack_from(">h", response, pos)
    pos += 2 + name_len + 4  # topic, partitions count (1)
    _partition, error, _hw, _lso, aborted = struct.unpack_from(">ihqqi", response, pos)
    assert error == 0
    pos += 26 + 16 * max(aborted, 0)
    (size,) = struct.unpack_from(">i", response, pos)
    return response[pos + 4 : pos + 4 + size]


def produce_batch(address: str, topic: str, batch: bytes) -> None:
    """Produce v3 (acks=-1) of one batch to partition 0."""
    body = struct.pack(">hhi", -1, -1, 10_000) + struct.pack(">i", 1) + _string(topic)
    body += struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch
    response = kafka_request(address, 0, 3, body)
    pos = 4  # responses count (1)
    (name_len,) = struct.unpack_from(">h", response, pos)
    pos += 2 + name_len + 4
    _partition, error = struct.unpack_from(">ih", response, pos)
    assert error == 0


@pytest.mark.parametrize("codec", CODECS)
def test_we_read_what_librdkafka_writes(cluster: str, codec: Compression) -> None:
    topic = f"from-librdkafka-{codec.label}"
    create_topic(cluster, topic)
    producer = Producer(
        {"bootstrap.servers": cluster, "compression.type": codec.label, "linger.ms": 50, **QUIET}
    )
    sent = rows(2000)
    for key, value, headers, ts in sent:
        producer.produce(topic, value=value, key=key, headers=headers, timestamp=ts, partition=0)
    assert producer.flush(30) == 0

    got: list[Record] = []
    codecs: set[int] = set()
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        # The mock cluster may answer a fetch with part of what it holds, as brokers do.
        data = fetch_batches(cluster, topic, len(got))
        pos = 0
        for header in iter_batches(data):
            codecs.add(header.compression)
            got.extend(decode_batch(data, pos)[1])
            pos += header.size
    assert codecs == {codec}
    assert [(r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (k, v, h, ts) for k, v, h, ts in sent
    ]
    assert [r.offset for r in got] == list(range(len(sent)))


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_reads_what_we_write(cluster: str, codec: Compression) -> None:
    topic = f"to-librdkafka-{codec.label}"
    create_topic(cluster, topic)
    sent = rows(1000)
    columns = {
        "keys": [r[0] for r in sent],
        "headers": [r[2] for r in sent],
        "timestamps": [r[3] for r in sent],
    }
    batch = encode_batch([r[1] for r in sent], compression=codec, **columns)  # type: ignore[arg-type]
    assert len(batch) < len(encode_batch([r[1] for r in sent], **columns)) // 2  # type: ignore[arg-type]
    produce_batch(cluster, topic, batch)

    consumer = Consumer(
        {
            "bootstrap.servers": cluster,
            "group.id": "oracle",
            "enable.auto.commit": False,
            "check.crcs": True,
            **QUIET,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]] = []
        deadline = time.monotonic() + 30
        while len(got) < len(sent) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            got.append(
                (message.key(), message.value(), list(message.headers() or []), message.timestamp()[1])
            )
    finally:
        consumer.close()
    assert got == [(k, v, h, ts) for k, v, h, ts in sent]

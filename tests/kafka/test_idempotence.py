"""Idempotent producers through the Kafka listener: retries append once, gaps and old epochs are
refused — at the wire, and with real clients whose first answer is lost."""

from __future__ import annotations

import socket
import struct
from typing import Any

import trio
from confluent_kafka import Producer
from kafka import KafkaProducer

import logbroker
from logbroker.kafka.apis import INIT_PRODUCER_ID, PRODUCE, Api
from logbroker.kafka.types import Reader, Writer
from logbroker.records import encode_batch, iter_records
from logbroker.server.kafka.connection import KafkaConnection
from logbroker.testing import RunningBroker


def create_topic(broker: RunningBroker, name: str) -> None:
    async def create() -> None:
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic(name)

    trio.run(create)


class WireClient:
    """Kafka requests over a plain socket, encoded with our codec."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.correlation_id = 0

    def request(self, api: Api, version: int, body: dict[str, Any]) -> dict[str, Any]:
        self.correlation_id += 1
        writer = Writer()
        writer.int16(api.key)
        writer.int16(version)
        writer.int32(self.correlation_id)
        writer.string("wire", False)
        api.request.encode(writer, body, version, False)
        data = writer.getvalue()
        self.sock.sendall(struct.pack(">i", len(data)) + data)
        size = struct.unpack(">i", self._read(4))[0]
        reader = Reader(self._read(size))
        assert reader.int32() == self.correlation_id
        return api.response.decode(reader, version, False)

    def _read(self, n: int) -> bytes:
        chunks = b""
        while len(chunks) < n:
            chunk = self.sock.recv(n - len(chunks))
            assert chunk, "the broker closed the connection"
            chunks += chunk
        return chunks

    def produce(self, topic: str, batch: bytes) -> tuple[int, int]:
        body = {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 10000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
        }
        [part] = self.request(PRODUCE, 7, body)["responses"][0]["partition_responses"]
        return part["error_code"], part["base_offset"]

    def close(self) -> None:
        self.sock.close()


def test_retries_gaps_and_epochs_at_the_wire(kafka_broker: RunningBroker) -> None:
    client = WireClient(kafka_broker.kafka_address)
    try:
        create_topic(kafka_broker, "t")
        answer = client.request(
            INIT_PRODUCER_ID, 1, {"transactional_id": None, "transaction_timeout_ms": 60000}
        )
        assert answer["error_code"] == 0 and answer["producer_epoch"] == 0
        pid = answer["producer_id"]

        def batch(sequence: int, values: list[bytes], epoch: int = 0) -> bytes:
            return encode_batch(values, producer_id=pid, producer_epoch=epoch, base_sequence=sequence)

        assert client.produce("t", batch(0, [b"a", b"b"])) == (0, 0)
        assert client.produce("t", batch(2, [b"c"])) == (0, 2)
        assert client.produce("t", batch(0, [b"a", b"b"])) == (0, 0)  # a retry: its first offset again
        assert client.produce("t", batch(2, [b"c"])) == (0, 2)
        assert client.produce("t", batch(5, [b"gap"]))[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        assert client.produce("t", batch(0, [b"new epoch"], epoch=1)) == (0, 3)
        assert client.produce("t", batch(3, [b"old epoch"], epoch=0))[0] == 47  # INVALID_PRODUCER_EPOCH
        other = client.request(
            INIT_PRODUCER_ID, 1, {"transactional_id": None, "transaction_timeout_ms": 60000}
        )
        assert other["producer_id"] != pid
    finally:
        client.close()
    log = kafka_broker.broker.log("t", 0)
    assert [r.value for r in iter_records(log.read(0, 1 << 20))] == [b"a", b"b", b"c", b"new epoch"]


def _lose_the_first_produce_answer(broker: RunningBroker) -> list[int]:
    """Make the broker append the first produce and then drop the connection instead of
    answering (as when the answer is lost on the way): the client sends the batch again."""
    produce = broker.engine.produce
    acked = produce.acked
    lost: list[int] = []

    async def lose_the_first(results, timeout_s):  # type: ignore[no-untyped-def]
        if not lost:
            lost.append(1)
            for connection in list(broker.server.connections):
                if isinstance(connection, KafkaConnection):
                    connection.close("test: the answer is lost")
            await trio.sleep_forever()
        return await acked(results, timeout_s)

    produce.acked = lose_the_first  # type: ignore[method-assign]
    return lost


def _stored_values(broker: RunningBroker, topic: str) -> list[bytes | None]:
    log = broker.broker.log(topic, 0)
    return [r.value for r in iter_records(log.read(0, 1 << 24))]


def test_kafka_python_retries_a_lost_produce_once(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "retried")
    lost = _lose_the_first_produce_answer(kafka_broker)
    producer = KafkaProducer(
        bootstrap_servers=kafka_broker.kafka_address, request_timeout_ms=1500, linger_ms=20
    )
    futures = [producer.send("retried", b"record-%d" % i) for i in range(50)]
    producer.flush(30)
    offsets = [f.get(10).offset for f in futures]
    producer.close()
    assert lost == [1]
    assert offsets == list(range(50))
    assert _stored_values(kafka_broker, "retried") == [b"record-%d" % i for i in range(50)]  # once each


def test_confluent_kafka_retries_a_lost_produce_once(kafka_broker: RunningBroker) -> None:
    create_topic(kafka_broker, "retried")
    lost = _lose_the_first_produce_answer(kafka_broker)
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.kafka_address,
            "enable.idempotence": True,
            "request.timeout.ms": 1500,
            "linger.ms": 20,
        }
    )
    offsets: list[int] = []
    for i in range(50):
        producer.produce(
            "retried", b"record-%d" % i, on_delivery=lambda err, msg: offsets.append(msg.offset())
        )
    assert producer.flush(30) == 0
    assert lost == [1]
    assert sorted(offsets) == list(range(50))
    assert _stored_values(kafka_broker, "retried") == [b"record-%d" % i for i in range(50)]

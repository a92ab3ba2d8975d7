"""A raw Kafka connection for tests: requests built and answers read with our own codec."""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

from logbroker.kafka.apis import PRODUCE, Api
from logbroker.kafka.types import Reader, Writer
from logbroker.testing import RunningBroker


class Wire:
    def __init__(self, broker: RunningBroker, ssl_context: ssl.SSLContext | None = None) -> None:
        host, port = broker.kafka_address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        if ssl_context is not None:
            self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
        self.correlation_id = 0

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def frame(self, api: Api, version: int, body: dict[str, Any]) -> bytes:
        """One request, framed (not sent)."""
        self.correlation_id += 1
        flexible = api.flexible(version)
        writer = Writer()
        writer.int16(api.key)
        writer.int16(version)
        writer.int32(self.correlation_id)
        writer.string("test", False)
        if flexible:
            writer.uvarint(0)  # no header tags
        api.request.encode(writer, body, version, flexible)
        data = writer.getvalue()
        return struct.pack(">i", len(data)) + data

    def answer(self, api: Api, version: int) -> dict[str, Any]:
        reader = Reader(self._frame())
        reader.int32()  # the correlation id
        flexible = api.flexible(version)
        if flexible and api.name != "ApiVersions":
            reader.uvarint()  # response header tags
        return api.response.decode(reader, version, flexible)

    def call(self, api: Api, version: int, body: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(self.frame(api, version, body))
        return self.answer(api, version)

    def token(self, token: bytes) -> bytes:
        """Send a SASL token as a bare frame (after a SaslHandshake v0); the broker's answer."""
        self.sock.sendall(struct.pack(">i", len(token)) + token)
        return self._frame()

    def closed(self) -> bool:
        return closed_quietly(self.sock)

    def _frame(self) -> bytes:
        return self._exactly(struct.unpack(">i", self._exactly(4))[0])

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the broker")
            data += chunk
        return data


def closed_quietly(sock: socket.socket) -> bool:
    """The peer closed the connection without another byte (waits up to 5 s)."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def produce_body(topic: str, partition: int, records: bytes, acks: int = -1) -> dict[str, Any]:
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": records}]}],
    }


def produced(wire: Wire, records: bytes, topic: str = "t") -> dict[str, Any]:
    """Produce `records` to partition 0 of `topic`; the partition's answer."""
    answer = wire.call(PRODUCE, 7, produce_body(topic, 0, records))
    return answer["responses"][0]["partition_responses"][0]  # type: ignore[no-any-return]


def fetch_body(topic: str, partition: int, offset: int, partition_max_bytes: int = 1 << 20) -> dict[str, Any]:
    wanted = {"partition": partition, "fetch_offset": offset, "partition_max_bytes": partition_max_bytes}
    return {
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "topics": [{"topic": topic, "partitions": [wanted]}],
    }


def list_offsets_body(topic: str, *partitions: int, timestamp: int = -1) -> dict[str, Any]:
    wanted = [{"partition_index": p, "timestamp": timestamp} for p in partitions]
    return {"replica_id": -1, "isolation_level": 0, "topics": [{"name": topic, "partitions": wanted}]}


def create_topics_body(*names: str, partitions: int = 1, validate_only: bool = False) -> dict[str, Any]:
    topics = [
        {"name": n, "num_partitions": partitions, "replication_factor": -1, "assignments": [], "configs": []}
        for n in names
    ]
    return {"topics": topics, "timeout_ms": 5000, "validate_only": validate_only}

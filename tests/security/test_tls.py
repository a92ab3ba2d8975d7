"""TLS on both listeners (issue 7): a test CA (trustme) signs the broker's certificate; the native
client, the CLI, kafka-python and confluent-kafka connect over TLS; mutual TLS refuses clients
without a certificate; plaintext or garbage sent to a TLS port is refused at the handshake."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import logbroker
from logbroker.errors import ConnectionClosedError, TopicAuthorizationFailedError, WrongListenerError
from logbroker.security.acls import AclRule, AclStore
from logbroker.testing import BrokerThread, RunningBroker, run_broker
from logbroker.tls import client_context

from .conftest import Pki


@pytest.fixture
def tls_broker(pki: Pki) -> Iterator[RunningBroker]:
    settings = {"tls_cert": pki.cert, "tls_key": pki.key, "kafka_port": 0, "auto_create_topics": True}
    with BrokerThread(kafka_group_initial_delay=0.0, **settings) as broker:
        yield broker


@pytest.fixture
def mtls_broker(pki: Pki) -> Iterator[RunningBroker]:
    with BrokerThread(tls_cert=pki.cert, tls_key=pki.key, tls_client_ca=pki.ca, kafka_port=0) as broker:
        yield broker


async def produce_and_read(address: str, context: ssl.SSLContext) -> list[bytes | None]:
    async with await logbroker.connect(address, ssl_context=context) as client:
        await client.create_topic("secret")
        await client.produce("secret", [b"over", b"tls"])
        consumer = client.consumer("secret")
        return [(await consumer.__anext__()).value for _ in range(2)]


def test_the_native_client_over_tls(tls_broker: RunningBroker, pki: Pki) -> None:
    assert trio.run(produce_and_read, tls_broker.address, client_context(pki.ca)) == [b"over", b"tls"]


def test_a_client_that_does_not_trust_the_broker_is_refused(tls_broker: RunningBroker) -> None:
    async def attempt() -> None:
        await logbroker.connect(tls_broker.address, ssl_context=client_context())  # the system's CAs

    with pytest.raises(ConnectionClosedError, match="TLS handshake failed"):
        trio.run(attempt)


@pytest.mark.parametrize("listener", ["native", "kafka"])
@pytest.mark.parametrize(
    "sent", [b"\x00\x00\x00\x10hello, plaintext", b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01" + bytes(300)]
)
def test_plaintext_or_garbage_to_a_tls_port_is_refused(
    tls_broker: RunningBroker, pki: Pki, listener: str, sent: bytes
) -> None:
    port = tls_broker.port if listener == "native" else tls_broker.server.kafka_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(sent)
        received = b""
        try:
            while chunk := sock.recv(1 << 16):  # a TLS alert at most, then the close
                received += chunk
        except ConnectionResetError:
            pass
        if listener == "native" and sent.startswith(b"\x00\x00"):  # a native client, in plaintext
            assert b"this port takes TLS connections only" in received
        elif listener == "native":  # a TLS alert, or the same refusal: nothing else
            assert not received.startswith(b"\x00\x00") or b"takes TLS connections only" in received
        else:
            assert not received.startswith(b"\x00\x00")  # no frame of either protocol
    assert trio.run(produce_and_read, tls_broker.address, client_context(pki.ca)) == [b"over", b"tls"]


def test_the_cli_over_tls(tls_broker: RunningBroker, pki: Pki) -> None:
    env = {**os.environ, "LOGBROKER_BOOTSTRAP": tls_broker.address, "LOGBROKER_TLS_CA": pki.ca}
    run = [sys.executable, "-m", "logbroker.cli"]
    subprocess.run([*run, "topics", "create", "cli"], env=env, check=True, capture_output=True, timeout=60)
    produced = subprocess.run(
        [*run, "produce", "cli"], input=b"one\ntwo\n", env=env, capture_output=True, timeout=60
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [*run, "consume", "cli", "--from", "earliest", "--max-messages", "2"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert consumed.stdout.split() == [b"one", b"two"], consumed.stderr
    plain = {k: v for k, v in env.items() if k != "LOGBROKER_TLS_CA"}
    without = subprocess.run([*run, "topics", "list"], env=plain, capture_output=True, text=True, timeout=60)
    assert without.returncode == 1, without.stderr  # plaintext to a TLS port: no answer
    assert "refused the connection: this port takes TLS connections only" in without.stderr


def test_mutual_tls_needs_a_certificate_the_ca_signed(mtls_broker: RunningBroker, pki: Pki) -> None:
    good = client_context(pki.ca, pki.client_cert)
    assert trio.run(produce_and_read, mtls_broker.address, good) == [b"over", b"tls"]

    async def attempt(context: ssl.SSLContext) -> None:
        async with await logbroker.connect(mtls_broker.address, ssl_context=context) as client:
            await client.list_topics()

    for refused in (client_context(pki.ca), client_context(pki.ca, pki.other_client)):
        with pytest.raises(ConnectionClosedError):
            trio.run(attempt, refused)


def test_kafka_python_over_tls(tls_broker: RunningBroker, pki: Pki) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    tls = {"security_protocol": "SSL", "ssl_cafile": pki.ca}
    producer = KafkaProducer(bootstrap_servers=tls_broker.kafka_address, **tls)
    producer.send("kp-tls", b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        "kp-tls",
        bootstrap_servers=tls_broker.kafka_address,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
        **tls,
    )
    assert [m.value for m in consumer][:1] == [b"hello"]
    consumer.close()


def test_confluent_kafka_over_mutual_tls(mtls_broker: RunningBroker, pki: Pki, tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    pem = Path(pki.client_cert).read_text()
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    key.write_text(pem[: pem.index("-----BEGIN CERTIFICATE-----")])
    cert.write_text(pem[pem.index("-----BEGIN CERTIFICATE-----") :])
    tls = {
        "bootstrap.servers": mtls_broker.kafka_address,
        "security.protocol": "SSL",
        "ssl.ca.location": pki.ca,
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }

    async def create() -> None:
        async with await logbroker.connect(
            mtls_broker.address, ssl_context=client_context(pki.ca, pki.client_cert)
        ) as client:
            await client.create_topic("ck-tls")

    trio.run(create)
    producer = Producer(tls)
    producer.produce("ck-tls", b"mutual")
    assert producer.flush(30) == 0
    consumer = Consumer({**tls, "group.id": "tls", "auto.offset.reset": "earliest"})
    consumer.subscribe(["ck-tls"])
    message = None
    for _ in range(40):
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            break
    consumer.close()
    assert message is not None and message.value() == b"mutual"


async def test_a_stalled_handshake_is_cut_and_counts_against_the_limit(
    pki: Pki, autojump_clock: trio.abc.Clock
) -> None:
    settings = {"tls_cert": pki.cert, "tls_key": pki.key, "max_connections": 2}
    async with run_broker(**settings) as broker:
        stalled = [await trio.open_tcp_stream("127.0.0.1", broker.port) for _ in range(2)]
        await trio.sleep(1)
        with pytest.raises(ConnectionClosedError):  # both slots are taken by handshakes
            await logbroker.connect(broker.address, ssl_context=client_context(pki.ca))
        await trio.sleep(10)  # tls_handshake_timeout: the stalled ones are closed
        for stream in stalled:
            assert await stream.receive_some(1) == b""
            await stream.aclose()
        async with await logbroker.connect(broker.address, ssl_context=client_context(pki.ca)) as client:
            await client.list_topics()


def test_mutual_tls_names_the_principal(pki: Pki, tmp_path: Path) -> None:
    """Without logins, a client certificate's common name is the principal the ACLs see."""
    store = AclStore(str(tmp_path))
    store.add(AclRule("User:orders-service", "all", "topic", "orders"))
    # A CN outside the user-name characters names no principal, whatever a rule says.
    store.add(AclRule("User:orders service", "all", "topic", "orders"))
    settings = {
        "tls_cert": pki.cert,
        "tls_key": pki.key,
        "tls_client_ca": pki.ca,
        "authorize": True,
        "security_dir": str(tmp_path),
        "auto_create_topics": False,
    }

    async def produce(context: ssl.SSLContext) -> None:
        async with await logbroker.connect(broker.address, ssl_context=context) as client:
            await client.produce("orders", [b"x"])

    async def create(context: ssl.SSLContext) -> None:
        async with await logbroker.connect(broker.address, ssl_context=context) as client:
            await client.create_topic("orders")  # "all" on the topic includes create

    with BrokerThread(**settings) as broker:
        trio.run(create, client_context(pki.ca, pki.named_client))
        trio.run(produce, client_context(pki.ca, pki.named_client))
        for other in (pki.client_cert, pki.odd_client):
            with pytest.raises(TopicAuthorizationFailedError, match="User:ANONYMOUS"):
                trio.run(produce, client_context(pki.ca, other))


def test_a_client_without_the_certificate_mutual_tls_asks_for_is_told_so(
    mtls_broker: RunningBroker, pki: Pki
) -> None:
    """Regression (a newcomer's walk): the error was "connection ... lost: " and a wrong hint."""

    async def attempt() -> None:
        async with await logbroker.connect(mtls_broker.address, ssl_context=client_context(pki.ca)) as client:
            await client.list_topics()

    with pytest.raises(ConnectionClosedError, match="require a client certificate"):
        trio.run(attempt)


def test_a_plaintext_client_on_the_tls_port_is_told_it_takes_tls_only(tls_broker: RunningBroker) -> None:
    """Regression (a newcomer's walk): a native client that forgot --tls-ca heard only "closed
    the connection before answering (is it logbroker's native port?)"."""

    async def attempt() -> None:
        async with await logbroker.connect(tls_broker.address) as client:
            await client.list_topics()

    with pytest.raises(WrongListenerError, match="this port takes TLS connections only: connect with TLS"):
        trio.run(attempt)

"""What a listener says to a client that came to the wrong port: one line in the log, and where
the client's protocol can carry it, an answer the client will show.

The listeners look at a connection's first bytes (`logbroker.protocol.sniff`). When they speak
another protocol than the listener's:

- a Kafka client on the native port (kcat, librdkafka, Java clients start with ApiVersions):
  logged at WARNING with where the Kafka listener is (or that it is off); an ApiVersions
  request is answered with BROKER_NOT_AVAILABLE and no APIs, which librdkafka reports as
  "ApiVersionRequest failed: Broker: Broker not available" rather than guessing at TLS;
- a native client on the Kafka port: logged at WARNING, and refused with a native error frame
  (correlation id 0), which the client shows: "... refused the connection: it is a Kafka
  listener; logbroker's own port is HOST:PORT";
- a TLS client on a plain listener: logged at WARNING (serve takes TLS with --tls-cert);
- HTTP: logged at INFO only (a browser, a probe or a scanner).

Then the connection closes, once the answer is sent.
"""

from __future__ import annotations

import logging

import attrs

from logbroker.errors import ProtocolError
from logbroker.kafka.apis import API_VERSIONS
from logbroker.kafka.protocol import KafkaProtocol, KafkaRequest, UnsupportedRequest
from logbroker.kafka.types import Buffer
from logbroker.protocol.connection import Connection, Request, Role, refusal
from logbroker.protocol.messages import Hello
from logbroker.protocol.sniff import Wire
from logbroker.server.listeners import format_address

__all__ = ["LISTENER_NAMES", "Ports", "Verdict", "wrong_listener"]

#: The short name of each listener's protocol, in the log.
LISTENER_NAMES = {Wire.NATIVE: "native", Wire.KAFKA: "Kafka"}
_BROKER_NOT_AVAILABLE = 8
_FIRST_FRAME_LIMIT = 1 << 20


@attrs.frozen
class Ports:
    """The server's ports (-1: that listener is off), to tell a client where to go instead."""

    native: int = -1
    kafka: int = -1


@attrs.frozen
class Verdict:
    level: int
    message: str
    #: Bytes to send the client before closing (none when its protocol cannot carry a word).
    answer: list[Buffer] = attrs.Factory(list)


def wrong_listener(listener: Wire, client: Wire, first: bytes, host: str, port: int, ports: Ports) -> Verdict:
    """The client's first bytes `first`, which speak `client`'s protocol, reached the `listener`
    port `host:port`: what to log and what to answer."""
    here = f"the {LISTENER_NAMES[listener]} port {format_address(host, port)}"
    if client is Wire.KAFKA:
        request = _kafka_request(first)
        who = f"a Kafka client (client id {request.client_id!r})" if request else "a Kafka client"
        where = (
            f"Kafka's listener is {format_address(host, ports.kafka)}"
            if ports.kafka >= 0
            else "the Kafka listener is off: start serve with --kafka-port"
        )
        answer: list[Buffer] = []
        if request is not None and _api_key(request) == API_VERSIONS.key:
            protocol = KafkaProtocol(_FIRST_FRAME_LIMIT)
            answer = [protocol.refuse_api_versions(request.correlation_id, _BROKER_NOT_AVAILABLE)]
        return Verdict(logging.WARNING, f"{who} connected to {here}; {where}", answer)
    if client is Wire.NATIVE:
        client_id = _native_client_id(first)
        who = "a logbroker client" + (f" (client id {client_id!r})" if client_id is not None else "")
        native = format_address(host, ports.native)
        return Verdict(
            logging.WARNING,
            f"{who} connected to {here}; logbroker's own port is {native}",
            # INVALID_REQUEST, not BROKER_NOT_AVAILABLE: trying this port again will not help.
            [refusal(f"it is a Kafka listener; logbroker's own port is {native}", error_code=42)],
        )
    if client is Wire.TLS:
        return Verdict(
            logging.WARNING,
            f"a TLS client connected to {here}, which takes plain TCP "
            "(serve takes TLS with --tls-cert and --tls-key)",
        )
    return Verdict(logging.INFO, f"an HTTP client connected to {here}, which does not speak HTTP")


def _api_key(request: KafkaRequest | UnsupportedRequest) -> int:
    return request.api.key if isinstance(request, KafkaRequest) else request.api_key


def _kafka_request(first: bytes) -> KafkaRequest | UnsupportedRequest | None:
    """The Kafka request at the start of `first`, if it is whole and its header decodes."""
    protocol = KafkaProtocol(_FIRST_FRAME_LIMIT)
    try:
        protocol.receive_data(first)
        event = protocol.next_event()
    except ProtocolError:
        return None
    return event if isinstance(event, KafkaRequest | UnsupportedRequest) else None


def _native_client_id(first: bytes) -> str | None:
    """The client id of the native Hello at the start of `first`, if it is whole."""
    protocol = Connection(Role.SERVER, _FIRST_FRAME_LIMIT)
    try:
        protocol.receive_data(first)
        event = protocol.next_event()
    except ProtocolError:
        return None
    if isinstance(event, Request) and isinstance(event.message, Hello):
        return event.message.client_id
    return None

"""`KafkaProtocol`: the Kafka wire protocol, server side, as a state machine over bytes (no I/O).

    protocol = KafkaProtocol(max_frame_bytes=100 << 20)
    protocol.receive_data(data)          # bytes from the socket; b"" at end of stream
    event = protocol.next_event()        # KafkaRequest / UnsupportedRequest / SaslToken /
                                         # NEED_DATA / CLOSED
    data = protocol.respond(event, body) # buffers to write to the socket, back to back

Frames and headers:

    offset  width  field
    ------  -----  -----------------------------------------------------------------------------
       0      4    size            int32   bytes after this field
       4      2    api key         int16   } request header v1 (v2 in flexible versions adds a
       6      2    api version     int16   } tagged-field section after the client id)
       8      4    correlation id  int32   }
      12      2+n  client id       int16 length + UTF-8, -1 = null (never compact, even in v2)
       ...         body            the API's request schema at that version

    response: int32 size, int32 correlation id, [tagged fields if flexible], body. ApiVersions
    answers always use the v0 response header (no tagged fields), whatever their version.

Bare SASL tokens (KIP-152). After a SaslHandshake v0 answered without an error, the client
sends its login's tokens as bare frames, not in SaslAuthenticate requests, and the broker
answers each with a bare frame; once the login succeeds, requests follow again:

    offset  width  field
    ------  -----  -----------------------------------------------------------------------------
       0      4    size            int32   bytes after this field (0 for an empty token)
       4      n    token           the mechanism's bytes (SCRAM's client-first message, ...)

`respond` switches to tokens when it answers such a handshake; each token arrives as a
`SaslToken` event and is answered with `respond_token`, which switches back with the answer
that completes the login. (A failed login gets no answer: Kafka closes the connection.)

A request for an API or version not served becomes `UnsupportedRequest`: for ApiVersions the
server answers with `api_versions_fallback` (KIP-511: a version-0 body with UNSUPPORTED_VERSION
and the versions served, so the client can retry at one it knows); for anything else Kafka closes
the connection, and so does logbroker, after logging why. A frame whose size is negative or over
the cap (tokens too) raises `ProtocolError` before it is buffered.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from logbroker.errors import FrameTooLargeError, ProtocolError
from logbroker.kafka.apis import API_VERSIONS, APIS, SASL_HANDSHAKE, Api
from logbroker.kafka.schema import read_tags
from logbroker.kafka.types import Buffer, KafkaDecodeError, Reader, Writer
from logbroker.protocol.connection import CLOSED, NEED_DATA, _Sentinel

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "KafkaProtocol",
    "KafkaRequest",
    "SaslToken",
    "UnsupportedRequest",
    "served_versions",
]

_SIZE = struct.Struct(">i")
_HEADER = struct.Struct(">hhi")  # api key, api version, correlation id
_MIN_FRAME = _HEADER.size + 2  # and a client id length
UNSUPPORTED_VERSION = 35


@attrs.frozen
class KafkaRequest:
    api: Api
    version: int
    correlation_id: int
    client_id: str | None
    body: dict[str, Any]


@attrs.frozen
class UnsupportedRequest:
    """A request for an API or a version that is not served, or whose body does not decode."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    reason: str


@attrs.frozen
class SaslToken:
    """A login's token in a bare frame: what follows a SaslHandshake v0."""

    token: bytes


# The sentinels are the native protocol's, so one read loop serves both protocols.
Event = KafkaRequest | UnsupportedRequest | SaslToken | _Sentinel


class KafkaProtocol:
    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._eof = False
        self._tokens = False

    @property
    def takes_sasl_tokens(self) -> bool:
        """Frames are a login's bare tokens (after a SaslHandshake v0), not requests."""
        return self._tokens

    @property
    def partial_frame(self) -> bool:
        """Bytes of an unfinished frame are buffered."""
        return bool(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._eof and data:
            raise ProtocolError("data received after the end of the stream")
        if not data:
            self._eof = True
        self._buffer += data

    def next_event(self) -> Event:
        buffer = self._buffer
        if len(buffer) < 4:
            if self._eof:
                if buffer:
                    raise ProtocolError(f"the stream ended inside a frame ({len(buffer)} bytes of it)")
                return CLOSED
            return NEED_DATA
        (size,) = _SIZE.unpack_from(buffer)
        what = "SASL token" if self._tokens else "request"
        if size > self.max_frame_bytes:
            raise FrameTooLargeError(
                f"a {what} of {size} bytes announced; the limit is {self.max_frame_bytes} (max_frame_bytes)"
            )
        if self._tokens and size < 0:
            raise ProtocolError(f"a SASL token of {size} bytes announced")
        if not self._tokens and size < _MIN_FRAME:
            raise ProtocolError(f"a request frame of {size} bytes is too short to hold a request header")
        if len(buffer) < 4 + size:
            if self._eof:
                raise ProtocolError(f"the stream ended inside a frame of {size} bytes")
            return NEED_DATA
        frame = bytes(buffer[4 : 4 + size])
        del buffer[: 4 + size]
        return SaslToken(frame) if self._tokens else self._parse(frame)

    def _parse(self, frame: bytes) -> KafkaRequest | UnsupportedRequest:
        api_key, version, correlation_id = _HEADER.unpack_from(frame)
        reader = Reader(frame, _HEADER.size)
        try:
            client_id = reader.string(compact=False)
        except KafkaDecodeError as exc:
            raise ProtocolError(f"a request header that does not decode: {exc.message}") from None
        api = APIS.get(api_key)
        if api is None:
            return UnsupportedRequest(
                api_key, version, correlation_id, client_id, f"API key {api_key} is not served"
            )
        if not api.supports(version):
            return UnsupportedRequest(
                api_key,
                version,
                correlation_id,
                client_id,
                f"{api.name} v{version} is not served (versions {api.min_version} to {api.max_version})",
            )
        flexible = api.flexible(version)
        try:
            if flexible:
                read_tags(reader, {}, {})  # the header's tagged fields: none is defined for requests
            body = api.request.decode(reader, version, flexible)
        except KafkaDecodeError as exc:
            return UnsupportedRequest(
                api_key, version, correlation_id, client_id, f"{api.name} v{version}: {exc.message}"
            )
        return KafkaRequest(api, version, correlation_id, client_id, body)

    def respond(self, request: KafkaRequest, body: dict[str, Any]) -> list[Buffer]:
        """The response frame for `request`, as buffers to send back to back: record batches
        in it (Fetch) are the buffers they came in, not copied."""
        api = request.api
        flexible = api.flexible(request.version)
        writer = Writer()
        writer.int32(0)  # the size, filled in below
        writer.int32(request.correlation_id)
        if flexible and api.key != API_VERSIONS.key:
            writer.uvarint(0)  # response header v1: no tagged fields
        api.response.encode(writer, body, request.version, flexible)
        parts = writer.getbuffers()
        first = parts[0]
        assert isinstance(first, bytearray)  # the writer's own buffer: the size goes in front
        _SIZE.pack_into(first, 0, len(writer) - 4)
        if api is SASL_HANDSHAKE and request.version == 0 and body["error_code"] == 0:
            self._tokens = True  # KIP-152: the login's tokens follow as bare frames
        return parts

    def respond_token(self, token: bytes, *, logged_in: bool) -> bytes:
        """The broker's answer to a `SaslToken`, as a bare frame (empty when the mechanism has
        nothing to say: Kafka answers a PLAIN login so too). `logged_in`: this answer completes
        the login, and requests follow."""
        if logged_in:
            self._tokens = False
        return _SIZE.pack(len(token)) + token

    def api_versions_fallback(self, event: UnsupportedRequest, served: list[dict[str, int]]) -> bytes:
        """KIP-511: answer an ApiVersions request of a version not served with a v0 body."""
        return _api_versions_v0(event.correlation_id, UNSUPPORTED_VERSION, served)

    def refuse_api_versions(self, correlation_id: int, error_code: int) -> bytes:
        """An ApiVersions answer that lists no API and says `error_code` (for a Kafka client that
        reached a port that does not speak Kafka), with a v0 body whatever the request's version:
        clients read an ApiVersions error as v0, the layout KIP-511's fallback answers in."""
        return _api_versions_v0(correlation_id, error_code, [])


def _api_versions_v0(correlation_id: int, error_code: int, api_keys: list[dict[str, int]]) -> bytes:
    writer = Writer()
    writer.int32(0)
    writer.int32(correlation_id)
    API_VERSIONS.response.encode(writer, {"error_code": error_code, "api_keys": api_keys}, 0, False)
    data = bytearray(writer.getvalue())
    _SIZE.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def served_versions() -> list[dict[str, int]]:
    """The ApiVersions entries for every API served."""
    return [
        {"api_key": api.key, "min_version": api.min_version, "max_version": api.max_version}
        for api in sorted(APIS.values(), key=lambda a: a.key)
    ]

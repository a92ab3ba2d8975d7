"""The Kafka codec against an independent implementation: kafka-python's protocol classes.

For every API served, every version advertised, requests and responses: a value drawn from our
schema is encoded by us, decoded by kafka-python to the same fields, and re-encoded by
kafka-python to the same bytes (golden bytes from an implementation we did not write); our
decoder reads those bytes back to the value. Then the codec's own edges: truncation, garbage,
tagged fields, byte-at-a-time framing, the ApiVersions fallback, and bare SASL tokens after a
SaslHandshake v0.
"""

from __future__ import annotations

import importlib
import pkgutil
import struct
from typing import Any

import kafka.protocol
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbroker.errors import FrameTooLargeError, ProtocolError
from logbroker.kafka.apis import API_VERSIONS, APIS, FETCH, METADATA, SASL_HANDSHAKE, Api
from logbroker.kafka.protocol import (
    CLOSED,
    NEED_DATA,
    KafkaProtocol,
    KafkaRequest,
    SaslToken,
    UnsupportedRequest,
)
from logbroker.kafka.schema import BOOL, BYTES, INT8, INT16, INT32, INT64, RECORDS, STRING, Array, F, Struct
from logbroker.kafka.types import KafkaDecodeError, Reader, Writer


def _kafka_python_classes() -> dict[str, type]:
    classes: dict[str, type] = {}
    for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # modules kafka-python itself does not import (optional extras)
            continue
        for name, value in vars(module).items():
            if isinstance(value, type) and name.endswith(("Request", "Response")):
                classes.setdefault(name, value)
    return classes


ORACLE = _kafka_python_classes()

_INTS = {
    INT8: st.integers(-(2**7), 2**7 - 1),
    INT16: st.integers(-(2**15), 2**15 - 1),
    INT32: st.integers(-(2**31), 2**31 - 1),
    INT64: st.integers(-(2**63), 2**63 - 1),
}


def values(struct: Struct, version: int, flexible: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Values of `struct` as it exists at `version` (only the fields that version has)."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in struct.fields:
        lo, hi = field.versions  # type: ignore[misc]
        if not lo <= version <= hi:
            continue
        nullable = field.nullable is not None and field.nullable[0] <= version <= field.nullable[1]
        fields[field.name] = _value(field.type, version, flexible, nullable)
    return st.fixed_dictionaries(fields)


def _value(kind: Any, version: int, flexible: bool, nullable: bool) -> st.SearchStrategy[Any]:
    if kind in _INTS:
        base: st.SearchStrategy[Any] = _INTS[kind]
    elif kind == BOOL:
        base = st.booleans()
    elif kind == STRING:
        base = st.text(max_size=12)
    elif kind in (BYTES, RECORDS):
        base = st.binary(max_size=40)
    elif isinstance(kind, Array):
        base = st.lists(_value(kind.item, version, flexible, False), max_size=3)
    elif isinstance(kind, Struct):
        base = values(kind, version, flexible)
    else:
        raise AssertionError(kind)
    return st.none() | base if nullable else base


def encode(struct: Struct, value: dict[str, Any], version: int, flexible: bool) -> bytes:
    writer = Writer()
    struct.encode(writer, value, version, flexible)
    return writer.getvalue()


def normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def projected(decoded: Any, like: Any) -> Any:
    """`decoded` with only the fields `like` has (decoding also fills the version's absent
    fields with their defaults)."""
    if isinstance(like, dict):
        return {k: projected(decoded[k], v) for k, v in like.items()}
    if isinstance(like, list):
        return [projected(d, v) for d, v in zip(decoded, like, strict=True)]
    return normalized(decoded)


CASES = [
    (api, version, kind)
    for api in APIS.values()
    for version in range(api.min_version, api.max_version + 1)
    for kind in ("Request", "Response")
]


@pytest.mark.parametrize(("api", "version", "kind"), CASES, ids=[f"{a.name}{k}-v{v}" for a, v, k in CASES])
@settings(max_examples=15)
@given(data=st.data())
def test_every_served_version_matches_kafka_python(
    api: Api, version: int, kind: str, data: st.DataObject
) -> None:
    struct = api.request if kind == "Request" else api.response
    flexible = api.flexible(version)
    value = data.draw(values(struct, version, flexible))
    if api is API_VERSIONS and kind == "Response":
        value["error_code"] = 0  # kafka-python reads any error answer as v0 (KIP-511's fallback)
    ours = encode(struct, value, version, flexible)

    oracle = ORACLE[api.name + kind].decode(ours, version=version)
    theirs_fields = oracle.to_dict(json=False)
    for name, expected in value.items():
        if name != "groups" or api.name != "DescribeGroups":  # kafka-python turns a bit field into a set
            assert normalized(theirs_fields[name]) == normalized(expected), name
    for attribute in ("_header", "_min_version", "_max_version"):
        setattr(oracle, attribute, None)
    theirs = bytes(oracle.encode(version=version))
    assert theirs == ours  # the same bytes from an implementation we did not write

    back = struct.decode(Reader(theirs), version, flexible)
    assert projected(back, value) == normalized(value)


def test_golden_api_versions_v3_request_and_v0_header_response() -> None:
    # Request header v2 (flexible): key 18, version 3, correlation id 7, client id "c" as an
    # int16-length string, an empty tag section; body: compact strings "n", "1", empty tags.
    frame = bytes.fromhex("00000011001200030000000700016300026e023100")
    protocol = KafkaProtocol(1 << 20)
    protocol.receive_data(frame)
    event = protocol.next_event()
    assert isinstance(event, KafkaRequest)
    assert (event.api, event.version, event.correlation_id, event.client_id) == (API_VERSIONS, 3, 7, "c")
    assert event.body == {"client_software_name": "n", "client_software_version": "1"}
    answer = b"".join(
        protocol.respond(
            event, {"error_code": 0, "api_keys": [{"api_key": 3, "min_version": 0, "max_version": 4}]}
        )
    )
    # Response header v0 (no tags, even though v3 is flexible); compact array of one entry with
    # its own empty tags; throttle time; the body's empty tags.
    assert answer == bytes.fromhex("0000001300000007000002000300000004000000000000")


def test_a_fetch_answer_carries_its_record_batches_uncopied() -> None:
    """The records of each partition go to the socket as the buffers they were read into: the
    answer is a list of buffers, the batches among them as they are, and the frame they make is
    the one a whole-bytes encoding gives."""
    batches = [bytes([n]) * 100_000 for n in range(3)]
    request = KafkaRequest(FETCH, 11, 9, "c", {})
    body = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "session_id": 0,
        "responses": [
            {"topic": "t", "partitions": [{"partition_index": p, "records": batches[p]} for p in range(3)]}
        ],
    }
    parts = KafkaProtocol(1 << 20).respond(request, body)
    assert all(any(part is batch for part in parts) for batch in batches)
    frame = b"".join(parts)
    writer = Writer()
    writer.int32(9)
    FETCH.response.encode(writer, body, 11, False)
    assert frame == struct.pack(">i", len(writer)) + writer.getvalue()


def test_golden_metadata_v4_request() -> None:
    body = {"topics": [{"name": "orders"}], "allow_auto_topic_creation": True}
    assert encode(METADATA.request, body, 4, False) == bytes.fromhex("000000010006") + b"orders" + b"\x01"
    assert encode(METADATA.request, {"topics": None}, 4, False) == bytes.fromhex("ffffffff01")


@settings(max_examples=40)
@given(data=st.data())
def test_a_truncated_body_raises_only_our_decode_error(data: st.DataObject) -> None:
    api, version, kind = data.draw(st.sampled_from(CASES))
    struct = api.request if kind == "Request" else api.response
    flexible = api.flexible(version)
    whole = encode(struct, data.draw(values(struct, version, flexible)), version, flexible)
    cut = data.draw(st.integers(0, max(len(whole) - 1, 0)))
    if cut < len(whole):
        with pytest.raises(KafkaDecodeError):
            struct.decode(Reader(whole[:cut]), version, flexible)


@settings(max_examples=200)
@given(api=st.sampled_from(list(APIS.values())), junk=st.binary(max_size=64))
def test_garbage_raises_only_our_decode_error(api: Api, junk: bytes) -> None:
    for version in (api.min_version, api.max_version):
        try:
            api.request.decode(Reader(junk), version, api.flexible(version))
        except KafkaDecodeError:
            pass


def test_a_lying_array_count_allocates_nothing() -> None:
    data = struct.pack(">i", 2**31 - 1)
    with pytest.raises(KafkaDecodeError, match="items"):
        METADATA.request.decode(Reader(data + b"\x01"), 4, False)


def test_any_nonzero_byte_is_a_true_boolean() -> None:
    assert Reader(b"\x02").boolean() is True
    assert Reader(b"\x00").boolean() is False


def test_unknown_tagged_fields_are_skipped_and_known_ones_read() -> None:
    schema = Struct(F("a", INT8), F("b", INT32, tag=1, default=-1))
    writer = Writer()
    schema.encode(writer, {"a": 5, "b": 9}, 0, True)
    data = writer.getvalue()
    assert data == bytes.fromhex("0501010400000009")
    assert schema.decode(Reader(data), 0, True) == {"a": 5, "b": 9}
    # An unknown tag 7 before ours is skipped; defaults fill what is absent.
    other = bytes.fromhex("05020104000000090702abcd")
    assert schema.decode(Reader(other), 0, True) == {"a": 5, "b": 9}
    assert schema.decode(Reader(bytes.fromhex("0500")), 0, True) == {"a": 5, "b": -1}
    with pytest.raises(KafkaDecodeError, match="order"):
        schema.decode(Reader(bytes.fromhex("050207000100")), 0, True)


# -- framing ------------------------------------------------------------------------------------


def _request_frame(api: Api, version: int, body: dict[str, Any], correlation_id: int = 1) -> bytes:
    writer = Writer()
    writer.int16(api.key)
    writer.int16(version)
    writer.int32(correlation_id)
    writer.string("test", False)
    if api.flexible(version):
        writer.uvarint(0)
    api.request.encode(writer, body, version, api.flexible(version))
    data = writer.getvalue()
    return struct.pack(">i", len(data)) + data


def test_frames_fed_a_byte_at_a_time_give_the_same_requests() -> None:
    frames = _request_frame(METADATA, 4, {"topics": None}, 1) + _request_frame(API_VERSIONS, 3, {}, 2)
    whole = KafkaProtocol(1 << 20)
    whole.receive_data(frames)
    expected = [whole.next_event(), whole.next_event()]
    assert whole.next_event() is NEED_DATA
    trickled = KafkaProtocol(1 << 20)
    events = []
    for i in range(len(frames)):
        trickled.receive_data(frames[i : i + 1])
        while (event := trickled.next_event()) is not NEED_DATA:
            events.append(event)
    assert events == expected
    trickled.receive_data(b"")
    assert trickled.next_event() is CLOSED


def test_an_oversized_frame_is_refused_from_its_size() -> None:
    protocol = KafkaProtocol(1000)
    protocol.receive_data(struct.pack(">i", 1001))
    with pytest.raises(FrameTooLargeError):
        protocol.next_event()
    negative = KafkaProtocol(1000)
    negative.receive_data(struct.pack(">i", -5))
    with pytest.raises(ProtocolError):
        negative.next_event()


def test_the_stream_ending_inside_a_frame_is_a_protocol_error() -> None:
    protocol = KafkaProtocol(1000)
    protocol.receive_data(_request_frame(METADATA, 4, {"topics": None})[:-1])
    assert protocol.next_event() is NEED_DATA
    protocol.receive_data(b"")
    with pytest.raises(ProtocolError, match="ended inside"):
        protocol.next_event()


def test_an_api_versions_request_of_an_unknown_version_gets_the_v0_fallback() -> None:
    protocol = KafkaProtocol(1 << 20)
    frame = struct.pack(">ihhih", 8 + 2, 18, 99, 42, -1)  # v99, null client id, no body
    protocol.receive_data(frame)
    event = protocol.next_event()
    assert isinstance(event, UnsupportedRequest) and event.api_key == 18
    answer = protocol.api_versions_fallback(event, [{"api_key": 18, "min_version": 0, "max_version": 4}])
    size, correlation_id, error, count = struct.unpack_from(">iihi", answer)
    assert (correlation_id, error, count) == (42, 35, 1)
    assert struct.unpack_from(">hhh", answer, 14) == (18, 0, 4)
    assert size == len(answer) - 4


def test_unserved_apis_and_versions_are_events_not_exceptions() -> None:
    protocol = KafkaProtocol(1 << 20)
    protocol.receive_data(struct.pack(">ihhih", 10, 57, 0, 1, -1))  # an API not served
    protocol.receive_data(struct.pack(">ihhih", 10, METADATA.key, 9, 2, -1))  # a version not served
    first, second = protocol.next_event(), protocol.next_event()
    assert isinstance(first, UnsupportedRequest) and "API key 57 is not served" in first.reason
    assert isinstance(second, UnsupportedRequest) and "Metadata v9 is not served" in second.reason
    assert protocol.next_event() is NEED_DATA


# -- bare SASL tokens after a SaslHandshake v0 (KIP-152) ----------------------------------------


def _token_frame(token: bytes) -> bytes:
    return struct.pack(">i", len(token)) + token


def _handshake(protocol: KafkaProtocol, version: int, error_code: int = 0) -> None:
    protocol.receive_data(_request_frame(SASL_HANDSHAKE, version, {"mechanism": "SCRAM-SHA-256"}))
    event = protocol.next_event()
    assert isinstance(event, KafkaRequest) and event.version == version
    protocol.respond(event, {"error_code": error_code, "mechanisms": ["SCRAM-SHA-256"]})


def _login_events(chunks: list[bytes]) -> list[tuple[object, bytes]]:
    """Feed a v0 login and a request behind it, as `chunks`, answering each event as a broker
    would (the second token completes the login): each event with the bytes of its answer."""
    protocol = KafkaProtocol(1 << 20)
    seen: list[tuple[object, bytes]] = []
    tokens = 0
    for chunk in chunks:
        protocol.receive_data(chunk)
        while (event := protocol.next_event()) is not NEED_DATA:
            answer = b""
            if isinstance(event, KafkaRequest) and event.api is SASL_HANDSHAKE:
                body = {"error_code": 0, "mechanisms": ["SCRAM-SHA-256"]}
                answer = b"".join(protocol.respond(event, body))
            elif isinstance(event, SaslToken):
                tokens += 1
                answer = protocol.respond_token(b"answer%d" % tokens, logged_in=tokens == 2)
            seen.append((event, answer))
    return seen


def test_after_a_v0_handshake_frames_are_sasl_tokens_until_the_login_completes() -> None:
    stream = (
        _request_frame(SASL_HANDSHAKE, 0, {"mechanism": "SCRAM-SHA-256"})
        + _token_frame(b"n,,n=alice,r=x")
        + _token_frame(b"")  # an empty token is a token
        + _request_frame(METADATA, 4, {"topics": None}, 7)
    )
    whole = _login_events([stream])
    events = [event for event, _ in whole]
    assert events[1:3] == [SaslToken(b"n,,n=alice,r=x"), SaslToken(b"")]
    assert [answer for _, answer in whole[1:]] == [_token_frame(b"answer1"), _token_frame(b"answer2"), b""]
    last = events[3]
    assert isinstance(last, KafkaRequest) and last.api is METADATA and last.correlation_id == 7
    assert _login_events([stream[i : i + 1] for i in range(len(stream))]) == whole


@pytest.mark.parametrize(("version", "error_code"), [(1, 0), (0, 33)])
def test_frames_stay_requests_after_a_v1_handshake_or_a_refused_v0_one(version: int, error_code: int) -> None:
    protocol = KafkaProtocol(1 << 20)
    _handshake(protocol, version, error_code)
    assert not protocol.takes_sasl_tokens
    protocol.receive_data(_request_frame(METADATA, 4, {"topics": None}))
    assert isinstance(protocol.next_event(), KafkaRequest)


def test_a_sasl_token_over_the_cap_or_of_a_negative_size_is_refused_from_its_size() -> None:
    for size, error in ((1001, FrameTooLargeError), (-1, ProtocolError)):
        protocol = KafkaProtocol(1000)
        _handshake(protocol, 0)
        assert protocol.takes_sasl_tokens
        protocol.receive_data(struct.pack(">i", size))
        with pytest.raises(error, match="SASL token"):
            protocol.next_event()

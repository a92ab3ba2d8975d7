"""The sans-IO native protocol: frames, messages, the connection state machine."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbroker.errors import FrameTooLargeError, LogbrokerError, ProtocolError, UnsupportedVersionError
from logbroker.protocol.connection import (
    CLOSED,
    NEED_DATA,
    Connection,
    InvalidRequest,
    Request,
    Response,
    Role,
)
from logbroker.protocol.frames import PREFIX, REQUEST, encode_frame
from logbroker.protocol.messages import (
    REQUESTS,
    RESPONSES,
    CreateTopic,
    DescribeTopicResponse,
    ErrorResponse,
    Fetch,
    FetchedPartition,
    FetchPartition,
    FetchResponse,
    Hello,
    ListOffsets,
    PartitionDescription,
    Produce,
    ProduceResponse,
)

EXAMPLES = [
    Request(1, Hello("tests")),
    Request(2, CreateTopic("orders", 3, {"retention.ms": "1000"})),
    Request(3, Produce("orders", 2, 1, 5000), b"\x00batch-bytes\xff" * 10),
    Request(4, Fetch([FetchPartition("orders", 0, 5), FetchPartition("x", 1, 0, 10)], 100, 1, 1000)),
    Request(5, ListOffsets("orders", 0, 1_767_225_600_000)),
    Request(6, ListOffsets("orders", 0, "latest")),
]
RESPONSE_EXAMPLES = [
    Response(3, ProduceResponse(base_offset=10, next_offset=12)),
    Response(4, FetchResponse(partitions=[FetchedPartition("orders", 0, high_watermark=9, size=3)]), b"abc"),
    Response(7, DescribeTopicResponse(name="x", partitions=[PartitionDescription(0, 0, 5, 5, 100, 1)])),
    Response(8, ErrorResponse(error_code=35, error_message="unknown request kind 99")),
    Response(9, ProduceResponse(error_code=3, error_message="unknown topic 'x'")),
]


def _pump(conn: Connection, data: bytes, step: int | None = None) -> list[object]:
    events: list[object] = []
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            if event is CLOSED:
                return events
            events.append(event)
    return events


@pytest.mark.parametrize("step", [None, 1, 7])
def test_requests_round_trip_whole_or_byte_by_byte(step: int | None) -> None:
    client = Connection(Role.CLIENT, 1 << 20)
    server = Connection(Role.SERVER, 1 << 20)
    wire = b"".join(client.send(r) for r in EXAMPLES)
    assert _pump(server, wire, step) == EXAMPLES


def test_responses_round_trip() -> None:
    client = Connection(Role.CLIENT, 1 << 20)
    server = Connection(Role.SERVER, 1 << 20)
    wire = b"".join(server.send(r) for r in RESPONSE_EXAMPLES)
    assert _pump(client, wire, 3) == RESPONSE_EXAMPLES


def test_trailing_data_waits_for_the_rest_of_its_frame() -> None:
    client = Connection(Role.CLIENT, 1 << 20)
    server = Connection(Role.SERVER, 1 << 20)
    first, second = (client.send(r) for r in EXAMPLES[:2])
    assert _pump(server, first + second[:5]) == [EXAMPLES[0]]
    assert server.partial_frame
    assert _pump(server, second[5:]) == [EXAMPLES[1]]
    assert not server.partial_frame


def test_a_clean_end_of_stream() -> None:
    server = Connection(Role.SERVER, 1 << 20)
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_an_end_of_stream_inside_a_frame_is_an_error() -> None:
    server = Connection(Role.SERVER, 1 << 20)
    server.receive_data(Connection(Role.CLIENT, 1 << 20).send(EXAMPLES[1])[:9])
    server.receive_data(b"")
    with pytest.raises(ProtocolError, match="inside a frame"):
        server.next_event()


def test_an_oversized_frame_is_refused_from_its_length_prefix() -> None:
    server = Connection(Role.SERVER, 1000)
    server.receive_data(struct.pack(">I", 2**31 - 1))  # nothing else was sent or buffered
    with pytest.raises(FrameTooLargeError, match="2147483647"):
        server.next_event()
    with pytest.raises(FrameTooLargeError):  # the connection stays broken
        server.next_event()


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (PREFIX.pack(5, REQUEST, 1, 0, 0), "shorter than a frame header"),
        (PREFIX.pack(11, 9, 1, 0, 0), "unknown frame kind"),
        (PREFIX.pack(11, REQUEST, 1, 0, 50), "does not fit"),
        (PREFIX.pack(11, 2, 1, 0, 0), "kind 2"),
    ],
)
def test_bad_frames(frame: bytes, match: str) -> None:
    server = Connection(Role.SERVER, 1 << 20)
    server.receive_data(frame)
    with pytest.raises(ProtocolError, match=match):
        server.next_event()


@pytest.mark.parametrize(
    ("api_key", "header", "error"),
    [
        (99, b"{}", UnsupportedVersionError),
        (5, b"{not json", ProtocolError),
        (5, b"[1, 2]", ProtocolError),
        (5, b'{"topic": "t"}', ProtocolError),  # missing partition
        (5, b'{"topic": "t", "partition": "0"}', ProtocolError),  # a string for an int
        (5, b'{"topic": "t", "partition": 0, "extra": 1}', ProtocolError),
        (6, b'{"partitions": [{"topic": "t", "partition": true, "offset": 0}]}', ProtocolError),
        (7, b'{"topic": "t", "partition": 0, "spec": "yesterday"}', ProtocolError),
        (1, b"[" * 100_000, ProtocolError),
        (1, b"\xff\xfe", ProtocolError),
    ],
)
def test_undecodable_requests_become_events_the_server_answers(
    api_key: int, header: bytes, error: type
) -> None:
    server = Connection(Role.SERVER, 1 << 20)
    server.receive_data(
        encode_frame(REQUEST, 42, api_key, header) + Connection(Role.CLIENT, 1 << 20).send(EXAMPLES[0])
    )
    event = server.next_event()
    assert isinstance(event, InvalidRequest) and event.correlation_id == 42 and event.api_key == api_key
    assert isinstance(event.error, error)
    assert server.next_event() == EXAMPLES[0]  # the connection goes on


def test_sending_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ProtocolError):
        Connection(Role.SERVER, 100).send(EXAMPLES[0])
    with pytest.raises(ProtocolError):
        Connection(Role.CLIENT, 100).send(RESPONSE_EXAMPLES[0])


def test_every_message_kind_is_registered_once() -> None:
    assert len({cls.API_KEY for cls in REQUESTS.values()}) == len(REQUESTS)
    assert all(key in RESPONSES for key in REQUESTS)


@given(st.binary(max_size=400))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    server = Connection(Role.SERVER, 1 << 16)
    try:
        _pump(server, data)
    except ProtocolError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@given(
    api_key=st.sampled_from(sorted(REQUESTS)),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "topic",
                "partition",
                "name",
                "partitions",
                "offset",
                "spec",
                "acks",
                "config",
                "max_bytes",
                "client_id",
            ]
        ),
        json_values,
        max_size=6,
    ),
)
def test_structured_garbage_in_valid_frames_is_answered_not_fatal(api_key: int, fields: dict) -> None:  # type: ignore[type-arg]
    server = Connection(Role.SERVER, 1 << 20)
    server.receive_data(encode_frame(REQUEST, 7, api_key, json.dumps(fields).encode()))
    event = server.next_event()
    assert isinstance(event, Request | InvalidRequest)
    if isinstance(event, InvalidRequest):
        assert isinstance(event.error, LogbrokerError)

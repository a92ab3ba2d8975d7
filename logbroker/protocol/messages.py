"""The requests and responses of the native protocol.

Each message is an attrs class with an `API_KEY`; its fields travel as the frame's JSON header
(through the one cattrs converter below), and record batches travel as the frame's payload, never
inside the header. A response carries `error_code` (0 for success; Kafka's codes, see
`logbroker.errors`) and `error_message`. `docs/protocol.md` lists every message.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

import attrs
import cattrs

from logbroker.errors import ProtocolError, UnsupportedVersionError

__all__ = [
    "AlterTopic",
    "AlterTopicResponse",
    "PROTOCOL_VERSION",
    "CommitOffset",
    "CommitOffsetResponse",
    "DescribeGroup",
    "DescribeGroupResponse",
    "GroupMemberInfo",
    "GroupOffsetInfo",
    "GroupPoll",
    "GroupPollResponse",
    "GroupSummary",
    "Heartbeat",
    "HeartbeatResponse",
    "JoinGroup",
    "JoinGroupResponse",
    "LeaveGroup",
    "LeaveGroupResponse",
    "ListGroupOffsets",
    "ListGroupOffsetsResponse",
    "ListGroups",
    "ListGroupsResponse",
    "Nack",
    "NackResponse",
    "PolledPartition",
    "ResetOffsets",
    "ResetOffsetsResponse",
    "SaslAuthenticate",
    "SaslAuthenticateResponse",
    "SaslHandshake",
    "SaslHandshakeResponse",
    "TopicPartitionRef",
    "REQUESTS",
    "RESPONSES",
    "CreateTopic",
    "CreateTopicResponse",
    "DeleteTopic",
    "DeleteTopicResponse",
    "DescribeTopic",
    "DescribeTopicResponse",
    "ErrorResponse",
    "Fetch",
    "FetchPartition",
    "FetchResponse",
    "FetchedPartition",
    "Hello",
    "HelloResponse",
    "ListOffsets",
    "ListOffsetsResponse",
    "ListTopics",
    "ListTopicsResponse",
    "Message",
    "PartitionDescription",
    "Produce",
    "ProduceResponse",
    "TopicSummary",
    "decode_message",
    "encode_message",
]

#: 1: the first; 2: ResetOffsets `create`, `dry_run` and its answer's `previous` (a broker
#: speaking 1 ignores the new fields, so a client asks for them only from a broker speaking 2).
PROTOCOL_VERSION = 2


@attrs.frozen
class Message:
    API_KEY: ClassVar[int] = -1

    @property
    def broker_wait_ms(self) -> int:
        """How long the broker may hold this request before it answers, by the request's own
        terms (a long poll's wait, a produce's wait for its fsync): a client waits that long on
        top of its request timeout."""
        return 0


@attrs.frozen
class Response(Message):
    error_code: int = 0
    error_message: str | None = None


# -- session -----------------------------------------------------------------------------------


@attrs.frozen
class Hello(Message):
    """The first request of a client: who it is and which protocol version it speaks."""

    API_KEY: ClassVar[int] = 0
    client_id: str = ""
    protocol_version: int = PROTOCOL_VERSION


@attrs.frozen
class HelloResponse(Response):
    API_KEY: ClassVar[int] = 0
    broker_version: str = ""
    protocol_version: int = PROTOCOL_VERSION
    max_frame_bytes: int = 0
    fsync: str = ""
    #: The SASL mechanisms of a broker that requires a login (empty: none needed).
    sasl_mechanisms: list[str] = attrs.Factory(list)


@attrs.frozen
class SaslHandshake(Message):
    """Start a login with a SASL mechanism (a broker that requires logins takes nothing else
    before one succeeds, but Hello). The exchange's tokens travel as frame payloads."""

    API_KEY: ClassVar[int] = 18
    mechanism: str


@attrs.frozen
class SaslHandshakeResponse(Response):
    API_KEY: ClassVar[int] = 18
    mechanisms: list[str] = attrs.Factory(list)


@attrs.frozen
class SaslAuthenticate(Message):
    """One client token of the login (the payload); the answer's payload is the broker's."""

    API_KEY: ClassVar[int] = 19


@attrs.frozen
class SaslAuthenticateResponse(Response):
    API_KEY: ClassVar[int] = 19
    #: Set once the exchange is verified: the connection now acts as this principal.
    principal: str | None = None


# -- topics ------------------------------------------------------------------------------------


@attrs.frozen
class PartitionDescription:
    partition: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    size_bytes: int
    segments: int
    damage: str | None = None
    read_only: str | None = None


@attrs.frozen
class TopicSummary:
    name: str
    partitions: int
    internal: bool = False


@attrs.frozen
class CreateTopic(Message):
    API_KEY: ClassVar[int] = 1
    name: str
    partitions: int | None = None
    config: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class DescribeTopicResponse(Response):
    API_KEY: ClassVar[int] = 4
    name: str = ""
    partitions: list[PartitionDescription] = attrs.Factory(list)
    config: dict[str, str] = attrs.Factory(dict)
    internal: bool = False
    created_ms: int = 0


@attrs.frozen
class CreateTopicResponse(DescribeTopicResponse):
    API_KEY: ClassVar[int] = 1


@attrs.frozen
class DeleteTopic(Message):
    API_KEY: ClassVar[int] = 2
    name: str


@attrs.frozen
class DeleteTopicResponse(Response):
    API_KEY: ClassVar[int] = 2


@attrs.frozen
class ListTopics(Message):
    API_KEY: ClassVar[int] = 3
    include_internal: bool = False


@attrs.frozen
class ListTopicsResponse(Response):
    API_KEY: ClassVar[int] = 3
    topics: list[TopicSummary] = attrs.Factory(list)


@attrs.frozen
class DescribeTopic(Message):
    API_KEY: ClassVar[int] = 4
    name: str
    #: Create the topic if the broker auto-creates topics (what a producer's first lookup does).
    allow_auto_create: bool = False


@attrs.frozen
class AlterTopic(Message):
    """Change a topic's settings (Kafka's names): a value sets one, null puts it back to the
    default; settings not named keep their values."""

    API_KEY: ClassVar[int] = 20
    name: str
    config: dict[str, str | None]
    validate_only: bool = False


@attrs.frozen
class AlterTopicResponse(DescribeTopicResponse):
    API_KEY: ClassVar[int] = 20


# -- data --------------------------------------------------------------------------------------


@attrs.frozen
class Produce(Message):
    """Append the payload (one or more whole batches) to one partition.

    `acks` 0: no response at all; 1: answer once the batches are stored as the broker's fsync
    policy requires. `timeout_ms` bounds the wait for the fsync.
    """

    API_KEY: ClassVar[int] = 5
    topic: str
    partition: int
    acks: int = 1
    timeout_ms: int = 30_000

    @property
    def broker_wait_ms(self) -> int:
        return self.timeout_ms


@attrs.frozen
class ProduceResponse(Response):
    API_KEY: ClassVar[int] = 5
    base_offset: int = -1
    #: The offset after the last appended record.
    next_offset: int = -1


@attrs.frozen
class FetchPartition:
    topic: str
    partition: int
    offset: int
    max_bytes: int = 1 << 20


@attrs.frozen
class Fetch(Message):
    """Read from several partitions; wait up to `max_wait_ms` until `min_bytes` are there."""

    API_KEY: ClassVar[int] = 6
    partitions: list[FetchPartition]
    max_wait_ms: int = 500
    min_bytes: int = 1
    max_bytes: int = 16 << 20

    @property
    def broker_wait_ms(self) -> int:
        return self.max_wait_ms


@attrs.frozen
class FetchedPartition:
    """One partition's part of a fetch response; its batches are `size` bytes of the payload."""

    topic: str
    partition: int
    error_code: int = 0
    error_message: str | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    log_end_offset: int = -1
    size: int = 0


@attrs.frozen
class FetchResponse(Response):
    API_KEY: ClassVar[int] = 6
    partitions: list[FetchedPartition] = attrs.Factory(list)


@attrs.frozen
class ListOffsets(Message):
    """`spec`: "earliest", "latest", or a timestamp in ms (the first offset at or after it)."""

    API_KEY: ClassVar[int] = 7
    topic: str
    partition: int
    spec: str | int


@attrs.frozen
class ListOffsetsResponse(Response):
    API_KEY: ClassVar[int] = 7
    #: The offset, or -1 when no record is at or after the timestamp.
    offset: int = -1


# -- consumer groups -----------------------------------------------------------------------------


@attrs.frozen
class TopicPartitionRef:
    topic: str
    partition: int


@attrs.frozen
class JoinGroup(Message):
    """Join (or update the subscription of) a group. Settings given here become the group's;
    `start` places partitions that have no committed offset: "earliest", "latest" or a time."""

    API_KEY: ClassVar[int] = 8
    group: str
    topics: list[str]
    member_id: str | None = None
    client_id: str = ""
    ack_timeout_ms: int | None = None
    max_deliveries: int | None = None
    session_timeout_ms: int | None = None
    start: str | int | None = None


@attrs.frozen
class JoinGroupResponse(Response):
    API_KEY: ClassVar[int] = 8
    member_id: str = ""
    generation: int = 0
    assignment: list[TopicPartitionRef] = attrs.Factory(list)
    ack_timeout_ms: int = 0
    max_deliveries: int = 0
    session_timeout_ms: int = 0


@attrs.frozen
class LeaveGroup(Message):
    API_KEY: ClassVar[int] = 9
    group: str
    member_id: str


@attrs.frozen
class LeaveGroupResponse(Response):
    API_KEY: ClassVar[int] = 9


@attrs.frozen
class Heartbeat(Message):
    API_KEY: ClassVar[int] = 10
    group: str
    member_id: str


@attrs.frozen
class HeartbeatResponse(Response):
    API_KEY: ClassVar[int] = 10
    generation: int = 0
    assignment: list[TopicPartitionRef] = attrs.Factory(list)


@attrs.frozen
class PartitionPosition:
    topic: str
    partition: int
    offset: int


@attrs.frozen
class GroupPoll(Message):
    """Receive records of the member's partitions; wait up to `max_wait_ms` for some.

    A member's newer poll ends its older ones (they return nothing). `seen` is set when the
    answer to an earlier poll was lost (cancelled, or its connection failed): for each of its
    partitions, the end of what the member did receive (a partition left out: nothing past the
    committed offset). Before this poll delivers, the broker takes back, uncounted, what it
    delivered beyond; otherwise an ack of a later record would commit past records never seen."""

    API_KEY: ClassVar[int] = 11
    group: str
    member_id: str
    max_wait_ms: int = 500
    max_bytes: int = 16 << 20
    seen: list[PartitionPosition] | None = None

    @property
    def broker_wait_ms(self) -> int:
        return self.max_wait_ms


@attrs.frozen
class PolledPartition:
    """Records [start, end) of a partition in `size` bytes of the payload (whole batches: skip
    records outside the range); `counts` gives their delivery counts as [start, end, count]."""

    topic: str
    partition: int
    start: int
    end: int
    size: int
    counts: list[list[int]]


@attrs.frozen
class GroupPollResponse(Response):
    API_KEY: ClassVar[int] = 11
    generation: int = 0
    assignment: list[TopicPartitionRef] = attrs.Factory(list)
    partitions: list[PolledPartition] = attrs.Factory(list)


@attrs.frozen
class CommitOffset(Message):
    """Everything of the partition below `offset` is done (a cumulative ack)."""

    API_KEY: ClassVar[int] = 12
    group: str
    member_id: str
    generation: int
    topic: str
    partition: int
    offset: int


@attrs.frozen
class CommitOffsetResponse(Response):
    API_KEY: ClassVar[int] = 12
    committed: int = -1


@attrs.frozen
class Nack(Message):
    """Processing failed at `offset`: deliver again from it after `delay_ms`. With `release`,
    the member hands back records it never processed: their delivery does not count."""

    API_KEY: ClassVar[int] = 13
    group: str
    member_id: str
    generation: int
    topic: str
    partition: int
    offset: int
    delay_ms: int = 0
    release: bool = False


@attrs.frozen
class NackResponse(Response):
    API_KEY: ClassVar[int] = 13


@attrs.frozen
class GroupSummary:
    name: str
    members: int
    generation: int
    topics: list[str]
    #: "native", or "kafka" for a group of Kafka clients (the Kafka listener's classic groups).
    protocol: str = "native"


@attrs.frozen
class ListGroups(Message):
    API_KEY: ClassVar[int] = 14


@attrs.frozen
class ListGroupsResponse(Response):
    API_KEY: ClassVar[int] = 14
    groups: list[GroupSummary] = attrs.Factory(list)


@attrs.frozen
class GroupMemberInfo:
    member_id: str
    client_id: str
    topics: list[str]
    assignment: list[TopicPartitionRef]


@attrs.frozen
class GroupOffsetInfo:
    group: str
    topic: str
    partition: int
    committed: int
    cursor: int
    in_flight: int
    log_start: int
    log_end: int
    lag: int
    owner: str | None = None


@attrs.frozen
class DescribeGroup(Message):
    API_KEY: ClassVar[int] = 15
    group: str


@attrs.frozen
class DescribeGroupResponse(Response):
    API_KEY: ClassVar[int] = 15
    name: str = ""
    generation: int = 0
    ack_timeout_ms: int = 0
    max_deliveries: int = 0
    session_timeout_ms: int = 0
    members: list[GroupMemberInfo] = attrs.Factory(list)
    partitions: list[GroupOffsetInfo] = attrs.Factory(list)
    #: "native", or "kafka" (then the ack settings do not apply).
    #: `state`: "Empty" or "Stable" for a native group; Kafka's group state for a Kafka one.
    protocol: str = "native"
    state: str = ""


@attrs.frozen
class ResetOffsets(Message):
    """Move a member-less group's offsets of `topic`: `to` is "earliest", "latest" or an
    offset; or `timestamp` (ms) for the first record at or after it. `create` False refuses a
    group that does not exist (GROUP_ID_NOT_FOUND); `dry_run` answers without changing anything."""

    API_KEY: ClassVar[int] = 16
    group: str
    topic: str
    to: str | int | None = None
    timestamp: int | None = None
    create: bool = True
    dry_run: bool = False


@attrs.frozen
class ResetOffsetsResponse(Response):
    API_KEY: ClassVar[int] = 16
    partitions: list[TopicPartitionRef] = attrs.Factory(list)
    offsets: list[int] = attrs.Factory(list)
    #: The committed offset of each partition before the reset (-1: none).
    previous: list[int] = attrs.Factory(list)


@attrs.frozen
class ListGroupOffsets(Message):
    API_KEY: ClassVar[int] = 17
    group: str | None = None
    topic: str | None = None


@attrs.frozen
class ListGroupOffsetsResponse(Response):
    API_KEY: ClassVar[int] = 17
    offsets: list[GroupOffsetInfo] = attrs.Factory(list)


@attrs.frozen
class ErrorResponse(Response):
    """The answer to a request the broker could not decode (unknown kind, bad header)."""

    API_KEY: ClassVar[int] = 0xFFFF


REQUESTS: dict[int, type[Message]] = {
    cls.API_KEY: cls
    for cls in (
        Hello,
        CreateTopic,
        DeleteTopic,
        ListTopics,
        DescribeTopic,
        Produce,
        Fetch,
        ListOffsets,
        JoinGroup,
        LeaveGroup,
        Heartbeat,
        GroupPoll,
        CommitOffset,
        Nack,
        ListGroups,
        DescribeGroup,
        ResetOffsets,
        ListGroupOffsets,
        SaslHandshake,
        SaslAuthenticate,
        AlterTopic,
    )
}
RESPONSES: dict[int, type[Message]] = {
    cls.API_KEY: cls
    for cls in (
        HelloResponse,
        CreateTopicResponse,
        DeleteTopicResponse,
        ListTopicsResponse,
        DescribeTopicResponse,
        ProduceResponse,
        FetchResponse,
        ListOffsetsResponse,
        JoinGroupResponse,
        LeaveGroupResponse,
        HeartbeatResponse,
        GroupPollResponse,
        CommitOffsetResponse,
        NackResponse,
        ListGroupsResponse,
        DescribeGroupResponse,
        ResetOffsetsResponse,
        ListGroupOffsetsResponse,
        ErrorResponse,
        SaslHandshakeResponse,
        SaslAuthenticateResponse,
        AlterTopicResponse,
    )
}


# -- the converter -----------------------------------------------------------------------------


def _strict(kind: type) -> Any:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _spec(value: Any, _: Any) -> str | int:
    if value in ("earliest", "latest") or (type(value) is int):
        return value  # type: ignore[no-any-return]
    raise TypeError(f"expected 'earliest', 'latest' or a timestamp, got {value!r}")


def _string_map(value: Any, _: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise TypeError("expected an object of strings")
    return value


#: The one converter between messages and JSON-ready dicts: unknown fields are refused, and
#: primitives must have exactly the right JSON type (no "1" for 1, no true for 1).
converter = cattrs.Converter(forbid_extra_keys=True)
for _kind in (int, str, bool):
    converter.register_structure_hook(_kind, _strict(_kind))
converter.register_structure_hook_func(lambda t: t == (str | int), _spec)
converter.register_structure_hook_func(
    lambda t: t == (str | int | None), lambda v, _: None if v is None else _spec(v, _)
)
converter.register_structure_hook_func(lambda t: t == dict[str, str], _string_map)

M = TypeVar("M", bound=Message)


def encode_message(message: Message) -> bytes:
    return json.dumps(converter.unstructure(message), separators=(",", ":")).encode()


def decode_message(registry: dict[int, type[Message]], api_key: int, header: bytes) -> Message:
    """The message a frame's header holds; raises `ProtocolError` for anything malformed and
    `UnsupportedVersionError` for an unknown api key."""
    cls = registry.get(api_key)
    if cls is None:
        raise UnsupportedVersionError(f"unknown request kind {api_key}")
    try:
        fields = json.loads(header)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ProtocolError("frame header is not a JSON object")
    try:
        return converter.structure(fields, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, RecursionError) as exc:
        raise ProtocolError(f"malformed {cls.__name__}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        parts = [_describe(e) for e in exc.exceptions]
        return "; ".join(parts) if parts else str(exc)
    return str(exc) or type(exc).__name__

"""`Session`: one logged-in connection to a broker, and the requests over it: admin calls, raw
produce and fetch. `Client` (in `client`) adds the producer and consumer factories; the
producer and the consumers talk to the broker through a `Session`.

A session keeps one connection and opens a new one when the old one is lost (the request that
saw it go down fails with `ConnectionClosedError`, which is retriable).

Timeouts (Kafka's two, `socket.connection.setup.timeout.ms` and `request.timeout.ms`):
`connect_timeout` (10 s) bounds setting a connection up: TCP connect, TLS handshake, the Hello
and the login; `request_timeout` (30 s) bounds each request after that, on top of the wait a
long poll asks the broker for (a fetch's or a group poll's `max_wait_ms`, a produce's fsync
wait). A setup that runs out of time raises `ConnectionClosedError`, a request
`RequestTimedOutError` (both retriable); either way the connection is dropped and the next call
opens a new one.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import attrs
import trio

from logbroker.client.connection import BrokerConnection
from logbroker.errors import (
    ConnectionClosedError,
    LogbrokerError,
    RequestTimedOutError,
    SaslAuthenticationError,
    UnsupportedVersionError,
)
from logbroker.protocol.messages import (
    AlterTopic,
    CreateTopic,
    DeleteTopic,
    DescribeGroup,
    DescribeGroupResponse,
    DescribeTopic,
    DescribeTopicResponse,
    Fetch,
    FetchPartition,
    FetchResponse,
    GroupOffsetInfo,
    GroupSummary,
    Hello,
    HelloResponse,
    ListGroupOffsets,
    ListGroupOffsetsResponse,
    ListGroups,
    ListGroupsResponse,
    ListOffsets,
    ListOffsetsResponse,
    ListTopics,
    ListTopicsResponse,
    Message,
    Produce,
    ProduceResponse,
    ResetOffsets,
    ResetOffsetsResponse,
    SaslAuthenticate,
    SaslAuthenticateResponse,
    SaslHandshake,
    TopicSummary,
)
from logbroker.records import Compression, encode_batch
from logbroker.security.scram import ScramClient

__all__ = ["OffsetMove", "OffsetSpec", "Session", "TopicDescription"]

TopicDescription = DescribeTopicResponse
OffsetSpec = Literal["earliest", "latest"] | int


@attrs.frozen
class OffsetMove:
    """One partition of a group's offset reset: the committed offset before (-1: none) and after."""

    partition: int
    previous: int
    offset: int


class Session:
    def __init__(
        self,
        address: str,
        *,
        client_id: str = "logbroker-python",
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        mechanism: str = "SCRAM-SHA-256",
    ) -> None:
        self.address = address
        self.client_id = client_id
        #: Seconds to set a connection up (TCP, TLS, Hello, login), and to wait for each answer.
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.ssl_context = ssl_context
        self.username = username
        self._password = password
        self.mechanism = mechanism
        #: The principal the broker took this client for after its login ("User:alice").
        self.principal: str | None = None
        self._conn: BrokerConnection | None = None
        self._connecting = trio.Lock()
        self._closed = False
        #: What the broker said about itself when this client connected.
        self.broker_info: HelloResponse | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None

    async def ensure_connected(self) -> None:
        """Connect (and log in) now, rather than at the first request."""
        await self._connection()

    async def _connection(self) -> BrokerConnection:
        async with self._connecting:
            if self._closed:
                raise LogbrokerError("the client is closed")
            if self._conn is None or self._conn.closed:
                if self._conn is not None:  # broken: its socket is closed before a new one opens
                    old, self._conn = self._conn, None
                    await old.aclose()
                deadline = trio.current_time() + self.connect_timeout
                conn = await BrokerConnection.open(
                    self.address,
                    connect_timeout=self.connect_timeout,
                    ssl_context=self.ssl_context,
                    request_timeout=self.request_timeout,
                )
                phase = "the handshake (Hello)"
                hint = " (is it logbroker's native port?)"
                try:
                    # The Hello and the login share what is left of connect_timeout.
                    left = max(deadline - trio.current_time(), 0.0)
                    response, _ = await conn.request(Hello(client_id=self.client_id), time_limit=left)
                    assert isinstance(response, HelloResponse)
                    if self.username is not None:
                        phase, hint = "the login", ""
                        await self._login(conn, deadline)
                    elif response.sasl_mechanisms:
                        raise SaslAuthenticationError(
                            f"the broker at {self.address} requires a login "
                            f"({', '.join(response.sasl_mechanisms)}): pass username and password (the CLI: --user, and the password in LOGBROKER_PASSWORD)"
                        )
                except RequestTimedOutError:
                    raise ConnectionClosedError(
                        f"cannot connect to {self.address}: it accepted the connection but sent no "
                        f"answer to {phase} within {self.connect_timeout:.3g} s{hint}"
                    ) from None
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await conn.aclose()
                    raise
                self.broker_info = response
                conn.max_request_bytes = response.max_frame_bytes or None
                self._conn = conn
            return self._conn

    async def _login(self, conn: BrokerConnection, deadline: float) -> None:
        """SASL over the native protocol: a handshake, then the mechanism's tokens as payloads,
        all before `deadline`."""

        async def exchange(message: Message, token: bytes = b"") -> bytes:
            left = max(deadline - trio.current_time(), 0.0)
            response, data = await conn.request(message, token, time_limit=left)
            code = getattr(response, "error_code", 0)
            if code:
                raise LogbrokerError.from_wire(code, getattr(response, "error_message", None))
            if isinstance(response, SaslAuthenticateResponse) and response.principal:
                self.principal = response.principal
            return data

        username, password = self.username or "", self._password or ""
        await exchange(SaslHandshake(self.mechanism))
        if self.mechanism == "PLAIN":
            await exchange(SaslAuthenticate(), b"\0" + username.encode() + b"\0" + password.encode())
            return
        scram = ScramClient(self.mechanism, username, password)
        server_first = await exchange(SaslAuthenticate(), scram.first())
        server_final = await exchange(SaslAuthenticate(), scram.final(server_first))
        scram.verify(server_final)

    async def request(self, message: Message, payload: bytes = b"") -> tuple[Message, bytes]:
        """Send one request; raise the error its response reports, if any."""
        conn = await self._connection()
        response, data = await conn.request(message, payload)
        code = getattr(response, "error_code", 0)
        if code:
            raise LogbrokerError.from_wire(code, getattr(response, "error_message", None))
        return response, data

    # -- admin ---------------------------------------------------------------------------------

    async def create_topic(
        self, name: str, partitions: int | None = None, config: Mapping[str, Any] | None = None
    ) -> TopicDescription:
        """Create a topic (`partitions` defaults to the broker's default, 1); `config` takes
        Kafka's names: retention.ms, retention.bytes, segment.bytes, segment.ms, max.message.bytes."""
        response, _ = await self.request(
            CreateTopic(name, partitions, {str(k): str(v) for k, v in (config or {}).items()})
        )
        assert isinstance(response, DescribeTopicResponse)
        return response

    async def alter_topic(self, name: str, config: Mapping[str, Any]) -> TopicDescription:
        """Change a topic's settings (Kafka's names); a value of None puts a setting back to the
        broker's default. The others keep their values. In force at once."""
        changes = {str(k): None if v is None else str(v) for k, v in config.items()}
        response, _ = await self.request(AlterTopic(name, changes))
        assert isinstance(response, DescribeTopicResponse)
        return response

    async def delete_topic(self, name: str) -> None:
        await self.request(DeleteTopic(name))

    async def list_topics(self, *, include_internal: bool = False) -> list[TopicSummary]:
        response, _ = await self.request(ListTopics(include_internal))
        assert isinstance(response, ListTopicsResponse)
        return response.topics

    async def describe_topic(self, name: str, *, allow_auto_create: bool = False) -> TopicDescription:
        response, _ = await self.request(DescribeTopic(name, allow_auto_create))
        assert isinstance(response, DescribeTopicResponse)
        return response

    async def list_offset(self, topic: str, partition: int, spec: OffsetSpec) -> int | None:
        """'earliest', 'latest', or the first offset at or after a timestamp (ms); None if no
        record is that new."""
        response, _ = await self.request(ListOffsets(topic, partition, spec))
        assert isinstance(response, ListOffsetsResponse)
        return None if response.offset < 0 else response.offset

    async def list_groups(self) -> list[GroupSummary]:
        response, _ = await self.request(ListGroups())
        assert isinstance(response, ListGroupsResponse)
        return response.groups

    async def describe_group(self, group: str) -> DescribeGroupResponse:
        """Members, assignment, generation, settings and per-partition offsets of a group."""
        response, _ = await self.request(DescribeGroup(group))
        assert isinstance(response, DescribeGroupResponse)
        return response

    async def group_offsets(
        self, group: str | None = None, topic: str | None = None
    ) -> list[GroupOffsetInfo]:
        """One row per (group, topic, partition): committed, cursor, in flight, log bounds, lag."""
        response, _ = await self.request(ListGroupOffsets(group, topic))
        assert isinstance(response, ListGroupOffsetsResponse)
        return response.offsets

    async def reset_offsets(
        self,
        group: str,
        topic: str,
        to: OffsetSpec | None = None,
        *,
        timestamp: int | None = None,
        create: bool = True,
    ) -> dict[int, int]:
        """Move a group's committed offsets of `topic` ('earliest', 'latest', an offset, or the
        first record at or after `timestamp` ms); only while the group has no members. Returns
        the new offset per partition. A group that does not exist yet starts at these offsets;
        with `create=False` that is a `GroupIdNotFoundError` instead."""
        moves = await self.plan_offsets(group, topic, to, timestamp=timestamp, create=create, dry_run=False)
        return {move.partition: move.offset for move in moves}

    async def plan_offsets(
        self,
        group: str,
        topic: str,
        to: OffsetSpec | None = None,
        *,
        timestamp: int | None = None,
        create: bool = True,
        dry_run: bool = True,
    ) -> list[OffsetMove]:
        """What `reset_offsets` does (or, with `dry_run=False`, did) per partition: the committed
        offset before (-1: none) and the new one. By default nothing changes."""
        if dry_run or not create:
            await self._connection()
            assert self.broker_info is not None
            if self.broker_info.protocol_version < 2:  # it would ignore both and move the offsets
                raise UnsupportedVersionError(
                    f"the broker at {self.address} (logbroker {self.broker_info.broker_version}) cannot "
                    "plan an offset reset or refuse an unknown group: upgrade it"
                )
        response, _ = await self.request(
            ResetOffsets(group, topic, to, timestamp, create=create, dry_run=dry_run)
        )
        assert isinstance(response, ResetOffsetsResponse)
        previous = response.previous or [-1] * len(response.offsets)
        return [
            OffsetMove(ref.partition, before, offset)
            for ref, before, offset in zip(response.partitions, previous, response.offsets, strict=True)
        ]

    # -- data ----------------------------------------------------------------------------------

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        partition: int = 0,
        keys: Sequence[bytes | None] | None = None,
        headers: Sequence[Sequence[tuple[str, bytes | None]]] | None = None,
        compression: Compression = Compression.NONE,
        broker_timeout: float = 30.0,
    ) -> int:
        """Send `values` as one batch to one partition and wait for the ack; return the offset of
        the first. (`producer()` batches, partitions and pipelines for you.) `broker_timeout` is
        how long the broker may wait for the fsync before it answers with a timeout error."""
        batch = encode_batch(values, keys=keys, headers=headers, compression=compression)
        return await self.produce_batches(topic, partition, batch, broker_timeout=broker_timeout)

    async def produce_batches(
        self, topic: str, partition: int, batches: bytes, *, broker_timeout: float = 30.0
    ) -> int:
        response, _ = await self.request(Produce(topic, partition, 1, int(broker_timeout * 1000)), batches)
        assert isinstance(response, ProduceResponse)
        return response.base_offset

    async def fetch(
        self,
        partitions: Sequence[FetchPartition],
        *,
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 16 << 20,
    ) -> tuple[FetchResponse, bytes]:
        """One fetch request: per-partition results (each with its own error code) and the
        payload, which holds each partition's `size` bytes of batches in order."""
        conn = await self._connection()
        response, payload = await conn.request(Fetch(list(partitions), max_wait_ms, min_bytes, max_bytes))
        if getattr(response, "error_code", 0):
            raise LogbrokerError.from_wire(response.error_code, response.error_message)  # type: ignore[attr-defined]
        assert isinstance(response, FetchResponse)
        return response, payload

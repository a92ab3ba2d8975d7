"""Kafka requests in, Kafka response bodies out, over the same broker core as the native protocol.

Requests that can be answered at once go through `answer`; those that wait have their own
coroutine: a produce (appended at once by `produce_now`, in arrival order, then acked once as
durable as the fsync policy says), a fetch (long poll), and the group requests that wait for a
rebalance, the leader's assignment, or an fsync.

This is the one place where broker exceptions become Kafka error codes; every error a request
can meet is answered in the response's own shape (per partition, per topic, or for the whole
request), never by closing the connection.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from logbroker import __version__
from logbroker.broker.classic_groups import PREPARING, STABLE, ClassicGroup
from logbroker.broker.names import check_topic_name, is_internal
from logbroker.errors import (
    CoordinatorNotAvailableError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    LogbrokerError,
    OffsetOutOfRangeError,
    RebalanceInProgressError,
    RequestTimedOutError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
    UnsupportedCompressionError,
)
from logbroker.kafka.apis import (
    ALTER_CONFIGS,
    API_VERSIONS,
    CREATE_TOPICS,
    DELETE_TOPICS,
    DESCRIBE_CONFIGS,
    DESCRIBE_GROUPS,
    FETCH,
    FIND_COORDINATOR,
    HEARTBEAT,
    INCREMENTAL_ALTER_CONFIGS,
    INIT_PRODUCER_ID,
    LEAVE_GROUP,
    LIST_GROUPS,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    PRODUCE,
)
from logbroker.kafka.protocol import KafkaRequest, served_versions
from logbroker.records.batch import BATCH_OVERHEAD, check_records, parse_header
from logbroker.records.codec import decode_batch, iter_batches
from logbroker.records.compression import Compression
from logbroker.server.handlers import monotonic_ms

if TYPE_CHECKING:
    from logbroker.broker.broker import ProduceResult
    from logbroker.server.handlers import RequestHandler
    from logbroker.storage.log import PartitionLog

__all__ = ["KafkaHandler", "error_body"]

logger = logging.getLogger("logbroker.kafka")

NODE_ID = 0
CLUSTER_ID = "logbroker"
#: How ListGroups and DescribeGroups show native groups to Kafka clients.
NATIVE_PROTOCOL_TYPE = "logbroker"
_MAX_WAIT_MS = 60_000
_UNSUPPORTED_VERSION = 35
_INVALID_REQUIRED_ACKS = 21
_UNKNOWN_SERVER_ERROR = -1

# The broker-level names of the topic settings (Kafka's broker defaults of topic configs).
_BROKER_NAMES = {
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "segment.bytes": "log.segment.bytes",
    "segment.ms": "log.roll.ms",
    "max.message.bytes": "message.max.bytes",
    "message.timestamp.after.max.ms": "log.message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms": "log.message.timestamp.before.max.ms",
    "index.interval.bytes": "log.index.interval.bytes",
    "cleanup.policy": "log.cleanup.policy",
    "message.timestamp.type": "log.message.timestamp.type",
}

# DescribeConfigs config sources.
_DYNAMIC_TOPIC_CONFIG = 1
_STATIC_BROKER_CONFIG = 4
_DEFAULT_CONFIG = 5


def code_of(exc: BaseException) -> int:
    if isinstance(exc, LogbrokerError):
        return exc.code
    logger.exception("unexpected error while answering a Kafka request", exc_info=exc)
    return _UNKNOWN_SERVER_ERROR


@attrs.frozen
class PendingProduce:
    """A produce appended in arrival order, waiting to be acked."""

    request: KafkaRequest
    #: (topic, partition, error code, result) in request order.
    results: list[tuple[str, int, int, ProduceResult | None]]


class KafkaHandler:
    def __init__(self, native: RequestHandler, host: str, port: Callable[[], int]) -> None:
        self.native = native
        self.broker = native.broker
        self.config = native.config
        self.host = host
        self._port = port

    @property
    def port(self) -> int:
        return self._port()

    # -- produce -------------------------------------------------------------------------------

    def produce_now(
        self, request: KafkaRequest, refused: Callable[[str], int] = lambda _: 0
    ) -> PendingProduce:
        """Validate and append every partition's batch at once, in arrival order. `refused`
        gives the error code of a topic the client may not write (0: it may)."""
        body = request.body
        results: list[tuple[str, int, int, ProduceResult | None]] = []
        now_ms = self.native.wall_ms()
        refuse = 0
        if request.version < PRODUCE.refused_below:
            refuse = _UNSUPPORTED_VERSION  # message formats 0 and 1: not stored here
        elif body["acks"] not in (-1, 0, 1):
            refuse = _INVALID_REQUIRED_ACKS
        elif body["transactional_id"] is not None:
            refuse = InvalidRequestError.code  # transactions are not served (docs/kafka.md)
        elif self.native.closing:
            refuse = CoordinatorNotAvailableError.code
        for topic in body["topic_data"]:
            name = topic["name"]
            for part in topic["partition_data"]:
                index = part["index"]
                code = refuse or refused(name)
                if code:
                    results.append((name, index, code, None))
                    continue
                try:
                    if not self.broker.has_topic(name):  # only Metadata creates topics, as in Kafka
                        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                    data = _one_batch(part["records"], request.version)
                    appended = self.broker.produce(name, index, data, now_ms=now_ms)
                except Exception as exc:
                    results.append((name, index, code_of(exc), None))
                    continue
                results.append((name, index, 0, appended))
        if self.native.ack_after_fsync:
            self.native.flusher.poke()
        else:
            for _, _, _, result in results:
                if result is not None:
                    self.native.signals.notify(result.log)
        return PendingProduce(request, results)

    async def produce_response(self, pending: PendingProduce) -> dict[str, Any]:
        """Wait until the appended batches are as durable as the policy says, then answer."""
        timeout_ms = max(pending.request.body["timeout_ms"], 0)
        codes = [code for _, _, code, _ in pending.results]
        if self.native.ack_after_fsync:
            with trio.move_on_after(timeout_ms / 1000):
                for i, (_, _, _, result) in enumerate(pending.results):
                    if result is None:
                        continue
                    try:
                        await self.native.flusher.wait_flushed(result.log, result.next_offset)
                    except LogbrokerError as exc:
                        codes[i] = exc.code
            for i, (_, _, _, result) in enumerate(pending.results):
                if codes[i] == 0 and result is not None and result.log.flushed_offset < result.next_offset:
                    codes[i] = RequestTimedOutError.code
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (name, index, _, result), code in zip(pending.results, codes, strict=True):
            by_topic.setdefault(name, []).append(
                {
                    "index": index,
                    "error_code": code,
                    "base_offset": result.base_offset if result is not None and code == 0 else -1,
                    "log_append_time_ms": -1,
                    "log_start_offset": result.log.log_start_offset if result is not None else -1,
                }
            )
        return {
            "responses": [{"name": n, "partition_responses": p} for n, p in by_topic.items()],
            "throttle_time_ms": 0,
        }

    # -- fetch ---------------------------------------------------------------------------------

    async def fetch(
        self, request: KafkaRequest, budget: int, refused: Callable[[str], int] = lambda _: 0
    ) -> dict[str, Any]:
        """Whole stored batches of every requested partition; waits (long poll) until
        `min_bytes` are there or `max_wait_ms` passes. Every requested partition is answered
        (with `refused`'s code for a topic the client may not read)."""
        body = request.body
        limit = min(max(body["max_bytes"], 0), self.config.max_fetch_bytes, budget)
        wait_ms = min(max(body["max_wait_ms"], 0), _MAX_WAIT_MS)
        deadline = trio.current_time() + wait_ms / 1000
        min_bytes = body["min_bytes"]
        while True:
            topics, logs, total, failed = self._fetch_once(body, limit, request.version, refused)
            if (
                total >= min_bytes
                or (min_bytes > 0 and total > 0 and total >= limit)
                or failed
                or not logs
                or self.native.closing
                or trio.current_time() >= deadline
            ):
                return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": topics}
            with trio.move_on_at(deadline):
                await self.native.signals.wait(logs)

    def _fetch_once(
        self, body: dict[str, Any], limit: int, version: int, refused: Callable[[str], int]
    ) -> tuple[list[dict[str, Any]], list[PartitionLog], int, bool]:
        topics: list[dict[str, Any]] = []
        logs: list[PartitionLog] = []
        total = 0
        failed = False
        broker = self.broker
        for topic in body["topics"]:
            name = topic["topic"]
            parts: list[dict[str, Any]] = []
            denied = refused(name)
            for wanted in topic["partitions"]:
                index = wanted["partition"]
                part = {
                    "partition_index": index,
                    "error_code": 0,
                    "high_watermark": -1,
                    "last_stable_offset": -1,
                    "log_start_offset": -1,
                    "aborted_transactions": [],
                    "preferred_read_replica": -1,
                    "records": b"",
                }
                parts.append(part)
                if denied:
                    failed = True
                    part["error_code"] = denied
                    continue
                room = min(max(wanted["partition_max_bytes"], 0), limit - total)
                if total == 0:
                    room = max(room, 1)  # KIP-74: the answer's first batch comes whole, whatever the limits
                try:
                    if not broker.has_topic(name):  # a fetch never creates a topic
                        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                    result = broker.fetch(name, index, wanted["fetch_offset"], max(room, 0))
                    logs.append(broker.log(name, index))
                except OffsetOutOfRangeError as exc:
                    failed = True
                    part.update(
                        error_code=exc.code,
                        high_watermark=exc.log_end_offset,
                        last_stable_offset=exc.log_end_offset,
                        log_start_offset=exc.log_start_offset,
                    )
                    continue
                except Exception as exc:
                    failed = True
                    part["error_code"] = code_of(exc)
                    continue
                data = result.data
                if data and version < 10 and _has_zstd(data):
                    failed = True
                    part["error_code"] = UnsupportedCompressionError.code
                    data = b""
                part.update(
                    high_watermark=result.high_watermark,
                    last_stable_offset=result.high_watermark,
                    log_start_offset=result.log_start_offset,
                    records=data,
                )
                total += len(data)
            topics.append({"topic": name, "partitions": parts})
        return topics, logs, total, failed

    # -- everything answered at once -----------------------------------------------------------

    def answer(self, request: KafkaRequest) -> dict[str, Any]:
        """Answer a request that needs no waiting."""
        api = request.api
        if api is API_VERSIONS:
            return {"error_code": 0, "api_keys": served_versions(), "throttle_time_ms": 0}
        if api is METADATA:
            return self._metadata(request)
        if api is LIST_OFFSETS:
            return self._list_offsets(request.body)
        if api is FIND_COORDINATOR:
            return self._find_coordinator(request.body)
        if api is CREATE_TOPICS:
            return self._create_topics(request.body)
        if api is DELETE_TOPICS:
            return self._delete_topics(request.body)
        if api is DESCRIBE_CONFIGS:
            return self._describe_configs(request.body)
        if api is ALTER_CONFIGS or api is INCREMENTAL_ALTER_CONFIGS:
            return self._alter_configs(request.body, incremental=api is INCREMENTAL_ALTER_CONFIGS)
        if api is INIT_PRODUCER_ID:
            return self._init_producer_id(request.body)
        if api is HEARTBEAT:
            return self._heartbeat(request.body)
        if api is LEAVE_GROUP:
            return self._leave_group(request.body)
        if api is OFFSET_FETCH:
            return self._offset_fetch(request.body)
        if api is LIST_GROUPS:
            return self._list_groups()
        if api is DESCRIBE_GROUPS:
            return self._describe_groups(request.body)
        raise InvalidRequestError(f"{api.name} is not answered here")

    def _metadata(self, request: KafkaRequest) -> dict[str, Any]:
        body = request.body
        broker = self.broker
        wanted = body["topics"]
        if wanted is None or (request.version == 0 and not wanted):
            names = [info.name for info in broker.list_topics(include_internal=True)]
        else:
            names = list(dict.fromkeys(t["name"] for t in wanted))  # each topic once, as Kafka does
        topics = []
        now_ms = self.native.wall_ms()
        for name in names:
            try:
                if not broker.has_topic(name):
                    check_topic_name(name)
                    if body["allow_auto_topic_creation"]:  # the one Kafka request that may create topics
                        broker.auto_create_topic(name, now_ms=now_ms)
                count = broker.partition_count(name)
            except Exception as exc:
                topics.append(
                    {"error_code": code_of(exc), "name": name, "is_internal": False, "partitions": []}
                )
                continue
            topics.append(
                {
                    "error_code": 0,
                    "name": name,
                    "is_internal": is_internal(name),
                    "partitions": [
                        {
                            "error_code": 0,
                            "partition_index": p,
                            "leader_id": NODE_ID,
                            "replica_nodes": [NODE_ID],
                            "isr_nodes": [NODE_ID],
                        }
                        for p in range(count)
                    ],
                }
            )
        return {
            "throttle_time_ms": 0,
            "brokers": [{"node_id": NODE_ID, "host": self.host, "port": self.port, "rack": None}],
            "cluster_id": CLUSTER_ID,
            "controller_id": NODE_ID,
            "topics": topics,
        }

    def _list_offsets(self, body: dict[str, Any]) -> dict[str, Any]:
        asked = Counter((t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"])
        topics = []
        for topic in body["topics"]:
            name = topic["name"]
            parts = []
            for wanted in topic["partitions"]:
                index = wanted["partition_index"]
                stamp = wanted["timestamp"]
                part = {"partition_index": index, "error_code": 0, "timestamp": -1, "offset": -1}
                try:
                    if asked[(name, index)] > 1:
                        raise InvalidRequestError(f"partition {index} of {name!r} is asked for twice")
                    if not self.broker.has_topic(name):  # only Metadata creates topics, as in Kafka
                        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                    if stamp in (-1, -2):
                        spec = "latest" if stamp == -1 else "earliest"
                        part["offset"] = self.broker.list_offset(name, index, spec)
                    elif stamp < 0:
                        raise InvalidRequestError(f"timestamp {stamp} is not served (only -1, -2 and times)")
                    else:
                        found = self.broker.list_offset(name, index, stamp)
                        if found is not None:
                            part.update(offset=found, timestamp=self._timestamp_at(name, index, found))
                except Exception as exc:
                    part["error_code"] = code_of(exc)
                parts.append(part)
            topics.append({"name": name, "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    def _timestamp_at(self, topic: str, partition: int, offset: int) -> int:
        """The timestamp of the record at `offset` (ListOffsets by time answers with it)."""
        try:
            data = self.broker.log(topic, partition).read(offset, 1)
            _, records = decode_batch(data)
            return next(r.timestamp for r in records if r.offset == offset)
        except (LogbrokerError, StopIteration):
            return -1

    def _find_coordinator(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["key_type"] != 0:
            return {
                "throttle_time_ms": 0,
                "error_code": CoordinatorNotAvailableError.code,
                "error_message": "transactions are not served by logbroker",
                "node_id": -1,
                "host": "",
                "port": -1,
            }
        return {
            "throttle_time_ms": 0,
            "error_code": 0,
            "error_message": None,
            "node_id": NODE_ID,
            "host": self.host,
            "port": self.port,
        }

    def _create_topics(self, body: dict[str, Any]) -> dict[str, Any]:
        now_ms = self.native.wall_ms()
        results = []
        asked = Counter(topic["name"] for topic in body["topics"])
        for topic in body["topics"]:
            name = topic["name"]
            try:
                if asked[name] > 1:  # Kafka refuses every copy and creates none
                    raise InvalidRequestError(f"topic {name!r} is named more than once")
                count = self._partitions_wanted(topic)
                config = {c["name"]: c["value"] for c in topic["configs"] if c["value"] is not None}
                if body["validate_only"]:
                    self.broker.check_new_topic(name, count, config)
                else:
                    self.broker.create_topic(name, count, config, now_ms=now_ms)
            except Exception as exc:
                results.append({"name": name, "error_code": code_of(exc), "error_message": str(exc)})
                continue
            results.append({"name": name, "error_code": 0, "error_message": None})
        return {"throttle_time_ms": 0, "topics": results}

    def _partitions_wanted(self, topic: dict[str, Any]) -> int | None:
        factor = topic["replication_factor"]
        assignments = topic["assignments"]
        if factor not in (-1, 1) and not assignments:
            raise InvalidReplicationFactorError(
                f"replication factor {factor}: this broker is one node, so -1 or 1"
            )
        if assignments:
            if topic["num_partitions"] != -1 or factor != -1:
                raise InvalidRequestError(
                    "give either assignments or a partition count and replication factor"
                )
            for a in assignments:
                if a["broker_ids"] != [NODE_ID]:
                    raise InvalidRequestError(f"partitions can only be placed on broker {NODE_ID}")
            if sorted(a["partition_index"] for a in assignments) != list(range(len(assignments))):
                raise InvalidPartitionsError("assignments must name partitions 0 to n-1")
            return len(assignments)
        count = topic["num_partitions"]
        return None if count == -1 else count

    def _delete_topics(self, body: dict[str, Any]) -> dict[str, Any]:
        responses = []
        asked = Counter(body["topic_names"])
        for name in body["topic_names"]:
            try:
                if asked[name] > 1:  # Kafka refuses every copy and deletes none
                    raise InvalidRequestError(f"topic {name!r} is named more than once")
                self.broker.delete_topic(name)
            except Exception as exc:
                responses.append({"name": name, "error_code": code_of(exc)})
                continue
            responses.append({"name": name, "error_code": 0})
        return {"throttle_time_ms": 0, "responses": responses}

    def _describe_configs(self, body: dict[str, Any]) -> dict[str, Any]:
        results = []
        unique = {(r["resource_type"], r["resource_name"]): r for r in body["resources"]}
        for resource in unique.values():  # each resource once: the answer is far larger than the ask
            kind, name, keys = (
                resource["resource_type"],
                resource["resource_name"],
                resource["configuration_keys"],
            )
            result: dict[str, Any] = {
                "error_code": 0,
                "error_message": None,
                "resource_type": kind,
                "resource_name": name,
                "configs": [],
            }
            try:
                if kind == 2:
                    entries = self._topic_configs(name)
                elif kind == 4 and name == str(NODE_ID):
                    entries = self._broker_configs()
                elif kind == 4 and name == "":
                    entries = []  # the cluster-wide dynamic defaults: there are none
                elif kind == 4:
                    raise InvalidRequestError(f"unexpected broker id {name!r}: this is broker {NODE_ID}")
                else:
                    raise InvalidRequestError(f"resource type {kind} is not described (2: topic, 4: broker)")
            except Exception as exc:
                result.update(error_code=code_of(exc), error_message=str(exc))
                results.append(result)
                continue
            result["configs"] = [
                {
                    "name": key,
                    "value": value,
                    "read_only": kind == 4,
                    "config_source": source,
                    "is_sensitive": False,
                    "synonyms": [],
                    "config_type": 0,
                    "documentation": None,
                }
                for key, value, source in entries
                if keys is None or key in keys
            ]
            results.append(result)
        return {"throttle_time_ms": 0, "results": results}

    def _alter_configs(self, body: dict[str, Any], *, incremental: bool) -> dict[str, Any]:
        """Topic settings changed in place (AlterConfigs: the listed settings are the topic's
        whole set; IncrementalAlterConfigs: each is set or deleted). Each resource is checked
        whole: a bad setting changes nothing of its topic. The broker's settings are read-only.
        A resource named twice, or a setting named twice in a resource, is refused (as Kafka
        does): applied in turn, the later would silently undo the earlier."""
        responses = []
        named = Counter((r["resource_type"], r["resource_name"]) for r in body["resources"])
        for resource in body["resources"]:
            kind, name = resource["resource_type"], resource["resource_name"]
            answer: dict[str, Any] = {
                "error_code": 0,
                "error_message": None,
                "resource_type": kind,
                "resource_name": name,
            }
            try:
                if named[kind, name] > 1:
                    raise InvalidRequestError(f"resource {name!r} is named more than once")
                settings = Counter(config["name"] for config in resource["configs"])
                if settings and max(settings.values()) > 1:
                    raise InvalidRequestError(f"{settings.most_common(1)[0][0]} is named more than once")
                if kind == 4:
                    raise InvalidRequestError("the broker's settings are read-only here: set them at start")
                if kind != 2:
                    raise InvalidRequestError(f"resource type {kind} cannot be altered (2: topic)")
                changes: dict[str, str | None] = {}
                for config in resource["configs"]:
                    operation = config["config_operation"] if incremental else 0
                    if operation == 1:
                        changes[config["name"]] = None
                    elif operation == 0:
                        changes[config["name"]] = config["value"]
                    else:  # APPEND and SUBTRACT are for list settings: a topic has none here
                        raise InvalidConfigError(
                            f"{config['name']}: operation {operation} is not supported (0 set, 1 delete)"
                        )
                self.broker.alter_topic_config(
                    name, changes, replace=not incremental, validate_only=body["validate_only"]
                )
            except Exception as exc:
                answer.update(error_code=code_of(exc), error_message=str(exc))
            responses.append(answer)
        return {"throttle_time_ms": 0, "responses": responses}

    def _topic_configs(self, name: str) -> list[tuple[str, str, int]]:
        info = self.broker.describe_topic(name)
        defaults = self.broker.options.topic_defaults.to_kafka()
        return [
            (key, value, _DEFAULT_CONFIG if defaults.get(key) == value else _DYNAMIC_TOPIC_CONFIG)
            for key, value in info.config.items()
        ]

    def _broker_configs(self) -> list[tuple[str, str, int]]:
        options = self.broker.options
        values = {
            "num.partitions": str(options.default_partitions),
            "auto.create.topics.enable": str(options.auto_create_topics).lower(),
            "default.replication.factor": "1",
            "logbroker.fsync": str(options.fsync),
            "logbroker.version": __version__,
        }
        topic_defaults = options.topic_defaults.to_kafka()
        values.update({name: topic_defaults[key] for key, name in _BROKER_NAMES.items()})
        return [(key, value, _STATIC_BROKER_CONFIG) for key, value in sorted(values.items())]

    def _init_producer_id(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["transactional_id"] is not None:
            return {
                "throttle_time_ms": 0,
                "error_code": InvalidRequestError.code,
                "producer_id": -1,
                "producer_epoch": -1,
            }
        try:
            producer_id = self.broker.allocate_producer_id()
        except Exception as exc:
            return {
                "throttle_time_ms": 0,
                "error_code": code_of(exc),
                "producer_id": -1,
                "producer_epoch": -1,
            }
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": producer_id, "producer_epoch": 0}

    # -- groups --------------------------------------------------------------------------------

    async def join_group(self, request: KafkaRequest, client_host: str) -> dict[str, Any]:
        """JoinGroup: answered when the rebalance it takes part in completes."""
        body = request.body
        groups = self.broker.groups
        name = body["group_id"]
        timeout = body["session_timeout_ms"]
        low, high = self.config.kafka_min_session_timeout, self.config.kafka_max_session_timeout
        if not round(low * 1000) <= timeout <= round(high * 1000):
            raise InvalidSessionTimeoutError(
                f"a session timeout of {timeout} ms is outside {round(low * 1000)} to {round(high * 1000)} ms"
            )
        group = groups.classic_group(name, now_ms=self.native.wall_ms())
        member, answer = groups.classic.join(
            group,
            body["member_id"],
            request.client_id or "",
            client_host,
            timeout,
            body["rebalance_timeout_ms"],
            body["protocol_type"],
            [(p["name"], p["metadata"]) for p in body["protocols"]],
            now=monotonic_ms(),
        )
        self._group_changed(name)
        if answer is None:
            member.waiting += 1
            try:
                while member.join_response is None:
                    if group.members.get(member.member_id) is not member:
                        raise UnknownMemberIdError(f"member {member.member_id!r} left group {name!r}")
                    await self.native.signals.wait([], [name])
            finally:
                member.waiting -= 1
                member.last_seen = monotonic_ms()
                self.native.poke_group_timer()
            answer, member.join_response = member.join_response, None
        return {
            "throttle_time_ms": 0,
            "error_code": 0,
            "generation_id": answer.generation_id,
            "protocol_name": answer.protocol_name,
            "leader": answer.leader,
            "member_id": answer.member_id,
            "members": [
                {"member_id": m, "group_instance_id": None, "metadata": meta} for m, meta in answer.members
            ],
        }

    async def sync_group(self, request: KafkaRequest) -> dict[str, Any]:
        """SyncGroup: the member's assignment, once the leader has sent them all."""
        body = request.body
        groups = self.broker.groups
        name = body["group_id"]
        group = self._existing_group(name)
        generation = body["generation_id"]
        assignments = {a["member_id"]: a["assignment"] for a in body["assignments"]}
        assignment = groups.classic.sync(
            group, body["member_id"], generation, assignments, now=monotonic_ms()
        )
        if assignment is not None:
            self._group_changed(name)
        member = group.members[body["member_id"]]
        member.waiting += 1
        try:
            while assignment is None:
                await self.native.signals.wait([], [name])
                if group.members.get(member.member_id) is not member:
                    raise UnknownMemberIdError(f"member {member.member_id!r} left group {name!r}")
                if group.generation != generation or group.state == PREPARING:
                    raise RebalanceInProgressError(f"group {name!r} is rebalancing: join again")
                if group.state == STABLE:
                    assignment = member.assignment
        finally:
            member.waiting -= 1
            member.last_seen = monotonic_ms()
            self.native.poke_group_timer()
        return {"throttle_time_ms": 0, "error_code": 0, "assignment": assignment}

    def _heartbeat(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self._existing_group(body["group_id"])
        self.broker.groups.classic.heartbeat(
            group, body["member_id"], body["generation_id"], now=monotonic_ms()
        )
        return {"throttle_time_ms": 0, "error_code": 0}

    def _leave_group(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["group_id"]
        self.broker.groups.classic.leave(self._existing_group(name), body["member_id"], now=monotonic_ms())
        self._group_changed(name)
        return {"throttle_time_ms": 0, "error_code": 0}

    async def offset_commit(self, request: KafkaRequest) -> dict[str, Any]:
        """OffsetCommit: answered once the offsets are as durable as the fsync policy says."""
        body = request.body
        offsets = {
            (t["name"], p["partition_index"]): (p["committed_offset"], p["committed_metadata"])
            for t in body["topics"]
            for p in t["partitions"]
        }
        try:
            codes, pending = self.broker.groups.commit_classic(
                body["group_id"],
                body["generation_id_or_member_epoch"],
                body["member_id"],
                offsets,
                now=monotonic_ms(),
                now_ms=self.native.wall_ms(),
            )
            await self.native.durable(pending)
        except Exception as exc:
            code = code_of(exc)
            codes = dict.fromkeys(offsets, code)
        return {
            "throttle_time_ms": 0,
            "topics": [
                {
                    "name": t["name"],
                    "partitions": [
                        {
                            "partition_index": p["partition_index"],
                            "error_code": codes[(t["name"], p["partition_index"])],
                        }
                        for p in t["partitions"]
                    ],
                }
                for t in body["topics"]
            ],
        }

    def _offset_fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = None
        if body["topics"] is not None:
            wanted = [(t["name"], p) for t in body["topics"] for p in t["partition_indexes"]]
        committed = self.broker.groups.fetch_offsets(body["group_id"], wanted)
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (topic, partition), (offset, metadata) in committed.items():
            by_topic.setdefault(topic, []).append(
                {
                    "partition_index": partition,
                    "committed_offset": offset,
                    "committed_leader_epoch": -1,
                    "metadata": metadata if offset >= 0 else "",
                    "error_code": 0,
                }
            )
        return {
            "throttle_time_ms": 0,
            "topics": [{"name": t, "partitions": p} for t, p in by_topic.items()],
            "error_code": 0,
        }

    def _list_groups(self) -> dict[str, Any]:
        groups = self.broker.groups
        listed = [
            {"group_id": g.name, "protocol_type": g.protocol_type or "consumer"}
            for g in groups.classic.groups.values()
        ]
        listed += [{"group_id": name, "protocol_type": NATIVE_PROTOCOL_TYPE} for name in groups.groups]
        return {"throttle_time_ms": 0, "error_code": 0, "groups": sorted(listed, key=lambda g: g["group_id"])}

    def _describe_groups(self, body: dict[str, Any]) -> dict[str, Any]:
        groups = self.broker.groups
        described = []
        for name in body["groups"]:
            classic = groups.classic.groups.get(name)
            native = groups.groups.get(name)
            entry: dict[str, Any] = {
                "error_code": 0,
                "group_id": name,
                "group_state": "Dead",
                "protocol_type": "",
                "protocol_data": "",
                "members": [],
            }
            if classic is not None:
                protocol = classic.protocol_name or ""
                entry.update(
                    group_state=classic.state,
                    protocol_type=classic.protocol_type or "",
                    protocol_data=protocol,
                    members=[
                        {
                            "member_id": m.member_id,
                            "group_instance_id": None,
                            "client_id": m.client_id,
                            "client_host": m.client_host,
                            "member_metadata": m.metadata(protocol),
                            "member_assignment": m.assignment,
                        }
                        for m in classic.members.values()
                    ],
                )
            elif native is not None:
                entry.update(
                    group_state="Stable" if native.members else "Empty",
                    protocol_type=NATIVE_PROTOCOL_TYPE,
                    members=[
                        {
                            "member_id": m.member_id,
                            "group_instance_id": None,
                            "client_id": m.client_id,
                            "client_host": "",
                            "member_metadata": b"",
                            "member_assignment": b"",
                        }
                        for m in native.members.values()
                    ],
                )
            described.append(entry)
        return {"throttle_time_ms": 0, "groups": described}

    def _existing_group(self, name: str) -> ClassicGroup:
        group = self.broker.groups.classic.groups.get(name)
        if group is None:
            raise UnknownMemberIdError(f"group {name!r} has no Kafka members")
        return group

    def _group_changed(self, name: str) -> None:
        self.native.signals.notify_group(name)
        self.native.poke_group_timer()


def _one_batch(records: memoryview | None, version: int) -> memoryview:
    """Produce v3+ carries exactly one RecordBatch per partition."""
    if records is None or len(records) < BATCH_OVERHEAD:
        raise InvalidRecordError("a produce must carry one record batch per partition")
    if records[16] != 2:  # the magic byte
        raise InvalidRecordError(f"message format v{records[16]}: Produce v3+ carries record batches (v2)")
    header = parse_header(records, 0)
    if header.size != len(records):
        raise InvalidRecordError("a produce must carry exactly one record batch per partition")
    if header.compression == Compression.ZSTD and version < 7:
        raise UnsupportedCompressionError("zstd batches need Produce v7 or later")
    if header.compression == Compression.NONE:
        # Kafka's log validator walks the records; Kafka clients trust the count it checked.
        check_records(records, 0, header)
    return records


def _has_zstd(data: bytes) -> bool:
    return any(header.compression == Compression.ZSTD for header in iter_batches(data))


def error_body(request: KafkaRequest, code: int) -> dict[str, Any]:
    """A response to `request` that reports `code` wherever the response has room for it."""
    body = request.body
    api = request.api
    names = {f.name for f in api.response.fields}
    out: dict[str, Any] = {"throttle_time_ms": 0}
    if "error_code" in names:
        out["error_code"] = code
    if api is PRODUCE:
        out["responses"] = [
            {
                "name": t["name"],
                "partition_responses": [
                    {"index": p["index"], "error_code": code, "base_offset": -1} for p in t["partition_data"]
                ],
            }
            for t in body["topic_data"]
        ]
    elif api is FETCH:
        out["responses"] = [
            {
                "topic": t["topic"],
                "partitions": [
                    {
                        "partition_index": p["partition"],
                        "error_code": code,
                        "high_watermark": -1,
                        "records": b"",
                    }
                    for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ]
    elif api in (LIST_OFFSETS, OFFSET_COMMIT):
        key = "partitions"
        out["topics"] = [
            {
                "name": t["name"],
                key: [{"partition_index": p["partition_index"], "error_code": code} for p in t[key]],
            }
            for t in body["topics"]
        ]
    elif api is OFFSET_FETCH and body["topics"] is not None:
        out["topics"] = [
            {
                "name": t["name"],
                "partitions": [
                    {"partition_index": p, "committed_offset": -1, "metadata": None, "error_code": code}
                    for p in t["partition_indexes"]
                ],
            }
            for t in body["topics"]
        ]
    elif api is METADATA and body["topics"]:
        out["topics"] = [{"error_code": code, "name": t["name"], "partitions": []} for t in body["topics"]]
    elif api is CREATE_TOPICS:
        out["topics"] = [{"name": t["name"], "error_code": code} for t in body["topics"]]
    elif api is DELETE_TOPICS:
        out["responses"] = [{"name": name, "error_code": code} for name in body["topic_names"]]
    elif api is DESCRIBE_CONFIGS:
        out["results"] = [
            {"error_code": code, "resource_type": r["resource_type"], "resource_name": r["resource_name"]}
            for r in body["resources"]
        ]
    elif api is DESCRIBE_GROUPS:
        out["groups"] = [{"error_code": code, "group_id": name} for name in body["groups"]]
    elif api is ALTER_CONFIGS or api is INCREMENTAL_ALTER_CONFIGS:
        out["responses"] = [
            {"error_code": code, "resource_type": r["resource_type"], "resource_name": r["resource_name"]}
            for r in body["resources"]
        ]
    return out

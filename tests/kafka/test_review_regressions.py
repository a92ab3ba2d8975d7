"""Defects a review of the Kafka listener found, each answered now as Kafka answers it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crc32c import crc32c

from logbroker.kafka.apis import (
    CREATE_TOPICS,
    DELETE_TOPICS,
    DESCRIBE_CONFIGS,
    FETCH,
    LIST_GROUPS,
    LIST_OFFSETS,
    METADATA,
    OFFSET_COMMIT,
    PRODUCE,
)
from logbroker.kafka.types import Reader
from logbroker.records.batch import ATTR_TRANSACTIONAL
from logbroker.records.codec import encode_batch
from logbroker.testing import BrokerThread, RunningBroker
from tests.kafka.conftest import KAFKA_SETTINGS
from tests.kafka.wire import Wire, create_topics_body, fetch_body, list_offsets_body, produce_body

INVALID_RECORD, INVALID_REQUEST, UNKNOWN_TOPIC, ILLEGAL_GENERATION, INVALID_PARTITIONS = 87, 42, 3, 22, 37


@pytest.fixture
def wire(kafka_broker: RunningBroker) -> Iterator[Wire]:
    with Wire(kafka_broker) as connection:
        connection.call(CREATE_TOPICS, 4, create_topics_body("t", partitions=2))
        yield connection


def produced(wire: Wire, records: bytes, topic: str = "t") -> dict[str, object]:
    answer = wire.call(PRODUCE, 7, produce_body(topic, 0, records))
    return answer["responses"][0]["partition_responses"][0]  # type: ignore[no-any-return]


def latest(wire: Wire, topic: str = "t") -> int:
    answer = wire.call(LIST_OFFSETS, 2, list_offsets_body(topic, 0))
    return answer["topics"][0]["partitions"][0]["offset"]  # type: ignore[no-any-return]


def with_crc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return bytes(batch)


@pytest.mark.parametrize(("records", "claimed"), [(3, 5), (3, 1)])
def test_a_batch_whose_record_count_lies_is_refused(wire: Wire, records: int, claimed: int) -> None:
    # Stored, it gave its records offsets overlapping the next batch's: confluent-kafka delivered
    # offsets 0,1,2,5,6,7,6,7 and kafka-python raised on every poll.
    batch = bytearray(encode_batch([b"r%d" % i for i in range(records)]))
    struct.pack_into(">i", batch, 57, claimed)  # recordsCount
    struct.pack_into(">i", batch, 23, claimed - 1)  # lastOffsetDelta, to match it
    assert produced(wire, with_crc(batch))["error_code"] == INVALID_RECORD
    assert latest(wire) == 0


def test_old_message_formats_and_transactional_batches_are_invalid_records(wire: Wire) -> None:
    old = bytearray(encode_batch([b"x"]))
    old[16] = 1  # magic 1
    assert produced(wire, bytes(old))["error_code"] == INVALID_RECORD
    transactional = bytearray(encode_batch([b"x"], producer_id=7, producer_epoch=0, base_sequence=0))
    struct.pack_into(">h", transactional, 21, ATTR_TRANSACTIONAL)
    assert produced(wire, with_crc(transactional))["error_code"] == INVALID_RECORD
    assert latest(wire) == 0


def test_a_topic_named_many_times_in_metadata_is_answered_once(wire: Wire) -> None:
    # One small request naming a large topic again and again built a huge answer on the event loop.
    answer = wire.call(METADATA, 4, {"topics": [{"name": "t"}] * 50, "allow_auto_topic_creation": False})
    assert [t["name"] for t in answer["topics"]] == ["t"]


def test_describe_configs_answers_each_resource_once_and_only_for_this_broker(wire: Wire) -> None:
    def describe(*names: str) -> list[dict[str, object]]:
        resources = [{"resource_type": 4, "resource_name": n, "configuration_keys": None} for n in names]
        body = {"resources": resources, "include_synonyms": False}
        return wire.call(DESCRIBE_CONFIGS, 1, body)["results"]  # type: ignore[no-any-return]

    [once] = describe("0", "0", "0")
    assert once["error_code"] == 0 and once["configs"]
    [other] = describe("5")
    assert other["error_code"] == INVALID_REQUEST
    [cluster] = describe("")
    assert (cluster["error_code"], cluster["configs"]) == (0, [])


def test_requests_behind_a_produce_see_its_records(tmp_path: Path) -> None:
    # ListOffsets and Fetch pipelined right behind an acks=all produce were answered from before
    # the produce (they were worked out when read, while the produce waited for its fsync).
    with BrokerThread(data_dir=str(tmp_path), **KAFKA_SETTINGS) as broker, Wire(broker) as wire:
        wire.call(CREATE_TOPICS, 4, create_topics_body("p"))
        for n in range(5):
            wire.sock.sendall(
                wire.frame(PRODUCE, 7, produce_body("p", 0, encode_batch([b"x"])))
                + wire.frame(LIST_OFFSETS, 2, list_offsets_body("p", 0))
                + wire.frame(FETCH, 11, fetch_body("p", 0, 0))
            )
            base = wire.answer(PRODUCE, 7)["responses"][0]["partition_responses"][0]["base_offset"]
            listed = wire.answer(LIST_OFFSETS, 2)["topics"][0]["partitions"][0]["offset"]
            fetched = wire.answer(FETCH, 11)["responses"][0]["partitions"][0]["high_watermark"]
            assert base == n and listed == fetched == n + 1


def test_only_metadata_creates_topics(wire: Wire, kafka_broker: RunningBroker) -> None:
    answer = wire.call(LIST_OFFSETS, 2, list_offsets_body("nosuch", 0))
    assert answer["topics"][0]["partitions"][0]["error_code"] == UNKNOWN_TOPIC
    assert produced(wire, encode_batch([b"x"]), topic="nosuch2")["error_code"] == UNKNOWN_TOPIC
    names = {t["name"] for t in wire.call(METADATA, 4, {"topics": None})["topics"]}
    assert "nosuch" not in names and "nosuch2" not in names


def test_names_asked_for_twice_are_refused_every_time(wire: Wire) -> None:
    answer = wire.call(LIST_OFFSETS, 2, list_offsets_body("t", 0, 1, 0))
    assert [p["error_code"] for p in answer["topics"][0]["partitions"]] == [
        INVALID_REQUEST,
        0,
        INVALID_REQUEST,
    ]
    created = wire.call(CREATE_TOPICS, 4, create_topics_body("twice", "twice"))["topics"]
    assert [t["error_code"] for t in created] == [INVALID_REQUEST, INVALID_REQUEST]
    deleted = wire.call(DELETE_TOPICS, 3, {"topic_names": ["t", "t"], "timeout_ms": 5000})["responses"]
    assert [t["error_code"] for t in deleted] == [INVALID_REQUEST, INVALID_REQUEST]
    names = {t["name"] for t in wire.call(METADATA, 4, {"topics": None})["topics"]}
    assert "t" in names and "twice" not in names


def commit_body(group: str, generation: int, member: str) -> dict[str, object]:
    partition = {"partition_index": 0, "committed_offset": 1, "committed_metadata": None}
    return {
        "group_id": group,
        "generation_id_or_member_epoch": generation,
        "member_id": member,
        "group_instance_id": None,
        "retention_time_ms": -1,
        "topics": [{"name": "t", "partitions": [partition]}],
    }


def test_offset_commits_to_groups_that_do_not_exist(wire: Wire) -> None:
    # A commit with a generation for a group that does not exist is from a member of a group
    # that is gone: ILLEGAL_GENERATION, and no group is created.
    answer = wire.call(OFFSET_COMMIT, 7, commit_body("ghost", 3, "member-1"))
    assert answer["topics"][0]["partitions"][0]["error_code"] == ILLEGAL_GENERATION
    assert wire.call(LIST_GROUPS, 2, {})["groups"] == []
    # Generation -1 is a commit of a group that only stores offsets here: accepted while empty,
    # whatever member id it names.
    answer = wire.call(OFFSET_COMMIT, 7, commit_body("simple", -1, "someone"))
    assert answer["topics"][0]["partitions"][0]["error_code"] == 0


def test_validate_only_checks_the_partition_count(wire: Wire) -> None:
    answer = wire.call(CREATE_TOPICS, 4, create_topics_body("zero", partitions=0, validate_only=True))
    assert answer["topics"][0]["error_code"] == INVALID_PARTITIONS


def test_a_zero_partition_limit_still_returns_the_first_batch(wire: Wire) -> None:
    produced(wire, encode_batch([b"first"]))
    answer = wire.call(FETCH, 11, fetch_body("t", 0, 0, partition_max_bytes=0))
    assert answer["responses"][0]["partitions"][0]["records"]  # KIP-74: the first batch, whole


def test_any_nonzero_byte_is_a_true_boolean() -> None:
    assert Reader(b"\x02").boolean() is True
    assert Reader(b"\x00").boolean() is False

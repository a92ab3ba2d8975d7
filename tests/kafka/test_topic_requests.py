"""Metadata, CreateTopics, DeleteTopics and ListOffsets at the Kafka listener, answered name by
name as Kafka answers them: a topic named many times is answered once or refused each time, a
producer's requests (Produce, Metadata allowing it) create a missing topic and a consumer's
(Fetch, ListOffsets, Metadata not allowing it) never do, and validate_only still checks."""

from __future__ import annotations

from logbroker.kafka.apis import CREATE_TOPICS, DELETE_TOPICS, FETCH, LIST_OFFSETS, METADATA
from logbroker.records.codec import encode_batch
from logbroker.testing import BrokerThread, RunningBroker
from tests.kafka.wire import Wire, create_topics_body, fetch_body, list_offsets_body, produced

UNKNOWN_TOPIC, INVALID_PARTITIONS, INVALID_REQUEST = 3, 37, 42


def test_a_topic_named_many_times_in_metadata_is_answered_once(wire: Wire) -> None:
    # One small request naming a large topic again and again built a huge answer on the event loop.
    answer = wire.call(METADATA, 4, {"topics": [{"name": "t"}] * 50, "allow_auto_topic_creation": False})
    assert [t["name"] for t in answer["topics"]] == ["t"]


def test_a_produce_request_to_an_unknown_topic_creates_it_with_the_default_partitions() -> None:
    with BrokerThread(kafka_port=0, default_partitions=2) as broker, Wire(broker) as wire:
        assert produced(wire, encode_batch([b"x"]), topic="fresh") == {
            "index": 0,
            "error_code": 0,
            "base_offset": 0,
            "log_append_time_ms": -1,
            "log_start_offset": 0,
        }
        assert broker.broker.describe_topic("fresh").partitions == 2


def test_a_consumers_requests_create_no_topic(wire: Wire, kafka_broker: RunningBroker) -> None:
    answer = wire.call(LIST_OFFSETS, 2, list_offsets_body("by-list-offsets", 0))
    assert answer["topics"][0]["partitions"][0]["error_code"] == UNKNOWN_TOPIC
    answer = wire.call(FETCH, 11, fetch_body("by-fetch", 0, 0))
    assert answer["responses"][0]["partitions"][0]["error_code"] == UNKNOWN_TOPIC
    asked = {"topics": [{"name": "by-metadata"}], "allow_auto_topic_creation": False}  # a consumer's
    assert wire.call(METADATA, 4, asked)["topics"][0]["error_code"] == UNKNOWN_TOPIC
    assert [t.name for t in kafka_broker.broker.list_topics()] == ["t"]


def test_without_auto_creation_produce_and_metadata_answer_unknown_topic() -> None:
    with BrokerThread(kafka_port=0, auto_create_topics=False) as broker, Wire(broker) as wire:
        assert produced(wire, encode_batch([b"x"]), topic="fresh")["error_code"] == UNKNOWN_TOPIC
        asked = {"topics": [{"name": "fresh"}], "allow_auto_topic_creation": True}
        assert wire.call(METADATA, 4, asked)["topics"][0]["error_code"] == UNKNOWN_TOPIC
        assert broker.broker.list_topics() == []


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


def test_a_validate_only_create_still_checks_the_partition_count(wire: Wire) -> None:
    answer = wire.call(CREATE_TOPICS, 4, create_topics_body("zero", partitions=0, validate_only=True))
    assert answer["topics"][0]["error_code"] == INVALID_PARTITIONS

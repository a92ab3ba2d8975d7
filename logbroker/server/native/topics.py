"""Topic admin requests of the native protocol."""

from __future__ import annotations

from logbroker.broker.broker import TopicInfo
from logbroker.protocol.messages import (
    AlterTopic,
    AlterTopicResponse,
    CreateTopic,
    CreateTopicResponse,
    DeleteTopic,
    DeleteTopicResponse,
    DescribeTopic,
    DescribeTopicResponse,
    ListOffsets,
    ListOffsetsResponse,
    ListTopics,
    ListTopicsResponse,
    Message,
    PartitionDescription,
    TopicSummary,
)
from logbroker.server.connection import BaseConnection

Reply = tuple[Message, bytes]


def create_topic(conn: BaseConnection, request: CreateTopic, payload: bytes) -> Reply:
    info = conn.engine.topics.create(request.name, request.partitions, request.config)
    assert info is not None
    return _description(CreateTopicResponse, info), b""


def alter_topic(conn: BaseConnection, request: AlterTopic, payload: bytes) -> Reply:
    info = conn.engine.topics.alter(request.name, request.config, validate_only=request.validate_only)
    return _description(AlterTopicResponse, info), b""


def delete_topic(conn: BaseConnection, request: DeleteTopic, payload: bytes) -> Reply:
    conn.engine.topics.delete(request.name)
    return DeleteTopicResponse(), b""


def list_topics(conn: BaseConnection, request: ListTopics, payload: bytes) -> Reply:
    topics = conn.engine.topics.list(include_internal=request.include_internal)
    return (
        ListTopicsResponse(
            topics=[
                TopicSummary(t.name, t.partitions, t.internal)
                for t in topics
                if conn.may("describe", "topic", t.name)
            ]
        ),
        b"",
    )


def describe_topic(conn: BaseConnection, request: DescribeTopic, payload: bytes) -> Reply:
    if request.allow_auto_create:  # a producer looking its topic up: it may create it
        conn.engine.topics.auto_create(request.name, by=conn.requester)
    return _description(DescribeTopicResponse, conn.engine.topics.describe(request.name)), b""


def list_offsets(conn: BaseConnection, request: ListOffsets, payload: bytes) -> Reply:
    offset = conn.engine.topics.list_offset(request.topic, request.partition, request.spec)
    return ListOffsetsResponse(offset=-1 if offset is None else offset), b""


def _description(cls: type[DescribeTopicResponse], info: TopicInfo) -> DescribeTopicResponse:
    return cls(
        name=info.name,
        partitions=[
            PartitionDescription(
                p.partition,
                p.log_start_offset,
                p.high_watermark,
                p.log_end_offset,
                p.size_bytes,
                p.segments,
                p.damage,
                p.read_only,
            )
            for p in info.partition_info
        ],
        config=info.config,
        internal=info.internal,
        created_ms=info.created_ms,
    )

"""The Kafka APIs logbroker serves: their keys, the versions advertised, and their schemas.

The version ranges are the recommended profile of shared/reference/kafka-protocol-subset.md §5.2:
each maximum is at most every target client's cap, so kcat (librdkafka 2.0.2), confluent-kafka
(librdkafka 2.1x), kafka-python 3 and aiokafka each land on one version per API, and the minimums
keep the exact versions old librdkafka checks for (Produce 0 for its compression gate, Fetch 4
and 10, OffsetCommit 2, ...). Everything served is non-flexible except ApiVersions 3-4.

Fields are written down here from Kafka's message schemas (field order is wire order), only as
far as the versions served need them. Names are Kafka's, in snake_case.
"""

from __future__ import annotations

import attrs

from logbroker.kafka.schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    Array,
    F,
    Struct,
)

__all__ = [
    "APIS",
    "CONSUMER_ASSIGNMENT",
    "CONSUMER_SUBSCRIPTION",
    "Api",
    "api_named",
]


@attrs.frozen
class Api:
    key: int
    name: str
    min_version: int
    max_version: int
    #: The first flexible version (compact encodings, tagged fields); None if never.
    flexible_from: int | None
    request: Struct
    response: Struct
    #: Versions advertised but refused (Produce 0-2: the old message formats).
    refused_below: int = 0

    def flexible(self, version: int) -> bool:
        return self.flexible_from is not None and version >= self.flexible_from

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


_TOPIC_PARTITIONS = Struct(F("topic", STRING), F("partitions", Array(INT32)))

API_VERSIONS = Api(
    18,
    "ApiVersions",
    0,
    4,
    3,
    request=Struct(
        F("client_software_name", STRING, "3+"),
        F("client_software_version", STRING, "3+"),
    ),
    response=Struct(
        F("error_code", INT16),
        F(
            "api_keys",
            Array(Struct(F("api_key", INT16), F("min_version", INT16), F("max_version", INT16))),
        ),
        F("throttle_time_ms", INT32, "1+"),
    ),
)

METADATA = Api(
    3,
    "Metadata",
    0,
    4,
    9,
    request=Struct(
        F("topics", Array(Struct(F("name", STRING))), nullable="1+"),
        F("allow_auto_topic_creation", BOOL, "4+", default=True),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "3+"),
        F(
            "brokers",
            Array(
                Struct(
                    F("node_id", INT32),
                    F("host", STRING),
                    F("port", INT32),
                    F("rack", STRING, "1+", nullable="1+", default=None),
                )
            ),
        ),
        F("cluster_id", STRING, "2+", nullable="2+", default=None),
        F("controller_id", INT32, "1+", default=-1),
        F(
            "topics",
            Array(
                Struct(
                    F("error_code", INT16),
                    F("name", STRING),
                    F("is_internal", BOOL, "1+"),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("error_code", INT16),
                                F("partition_index", INT32),
                                F("leader_id", INT32),
                                F("replica_nodes", Array(INT32)),
                                F("isr_nodes", Array(INT32)),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

PRODUCE = Api(
    0,
    "Produce",
    0,
    7,
    9,
    refused_below=3,
    request=Struct(
        F("transactional_id", STRING, "3+", nullable="3+", default=None),
        F("acks", INT16),
        F("timeout_ms", INT32),
        F(
            "topic_data",
            Array(
                Struct(
                    F("name", STRING),
                    F(
                        "partition_data",
                        Array(Struct(F("index", INT32), F("records", RECORDS, nullable="0+"))),
                    ),
                )
            ),
        ),
    ),
    response=Struct(
        F(
            "responses",
            Array(
                Struct(
                    F("name", STRING),
                    F(
                        "partition_responses",
                        Array(
                            Struct(
                                F("index", INT32),
                                F("error_code", INT16),
                                F("base_offset", INT64),
                                F("log_append_time_ms", INT64, "2+", default=-1),
                                F("log_start_offset", INT64, "5+", default=-1),
                            )
                        ),
                    ),
                )
            ),
        ),
        F("throttle_time_ms", INT32, "1+"),
    ),
)

FETCH = Api(
    1,
    "Fetch",
    4,
    11,
    12,
    request=Struct(
        F("replica_id", INT32, default=-1),
        F("max_wait_ms", INT32),
        F("min_bytes", INT32),
        F("max_bytes", INT32, "3+", default=0x7FFFFFFF),
        F("isolation_level", INT8, "4+"),
        F("session_id", INT32, "7+"),
        F("session_epoch", INT32, "7+", default=-1),
        F(
            "topics",
            Array(
                Struct(
                    F("topic", STRING),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("partition", INT32),
                                F("current_leader_epoch", INT32, "9+", default=-1),
                                F("fetch_offset", INT64),
                                F("log_start_offset", INT64, "5+", default=-1),
                                F("partition_max_bytes", INT32),
                            )
                        ),
                    ),
                )
            ),
        ),
        F("forgotten_topics_data", Array(_TOPIC_PARTITIONS), "7+"),
        F("rack_id", STRING, "11+"),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16, "7+"),
        F("session_id", INT32, "7+"),
        F(
            "responses",
            Array(
                Struct(
                    F("topic", STRING),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("partition_index", INT32),
                                F("error_code", INT16),
                                F("high_watermark", INT64),
                                F("last_stable_offset", INT64, "4+", default=-1),
                                F("log_start_offset", INT64, "5+", default=-1),
                                F(
                                    "aborted_transactions",
                                    Array(Struct(F("producer_id", INT64), F("first_offset", INT64))),
                                    "4+",
                                    nullable="4+",
                                ),
                                F("preferred_read_replica", INT32, "11+", default=-1),
                                F("records", RECORDS, nullable="0+"),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

LIST_OFFSETS = Api(
    2,
    "ListOffsets",
    1,
    2,
    6,
    request=Struct(
        F("replica_id", INT32),
        F("isolation_level", INT8, "2+"),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F("partitions", Array(Struct(F("partition_index", INT32), F("timestamp", INT64)))),
                )
            ),
        ),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "2+"),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("partition_index", INT32),
                                F("error_code", INT16),
                                F("timestamp", INT64, default=-1),
                                F("offset", INT64, default=-1),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

FIND_COORDINATOR = Api(
    10,
    "FindCoordinator",
    0,
    2,
    3,
    request=Struct(F("key", STRING), F("key_type", INT8, "1+")),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("error_message", STRING, "1+", nullable="1+", default=None),
        F("node_id", INT32),
        F("host", STRING),
        F("port", INT32),
    ),
)

_PROTOCOLS = Array(Struct(F("name", STRING), F("metadata", BYTES)))

JOIN_GROUP = Api(
    11,
    "JoinGroup",
    0,
    5,
    6,
    request=Struct(
        F("group_id", STRING),
        F("session_timeout_ms", INT32),
        F("rebalance_timeout_ms", INT32, "1+", default=-1),
        F("member_id", STRING),
        F("group_instance_id", STRING, "5+", nullable="5+", default=None),
        F("protocol_type", STRING),
        F("protocols", _PROTOCOLS),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "2+"),
        F("error_code", INT16),
        F("generation_id", INT32, default=-1),
        F("protocol_name", STRING),
        F("leader", STRING),
        F("member_id", STRING),
        F(
            "members",
            Array(
                Struct(
                    F("member_id", STRING),
                    F("group_instance_id", STRING, "5+", nullable="5+", default=None),
                    F("metadata", BYTES),
                )
            ),
        ),
    ),
)

SYNC_GROUP = Api(
    14,
    "SyncGroup",
    0,
    3,
    4,
    request=Struct(
        F("group_id", STRING),
        F("generation_id", INT32),
        F("member_id", STRING),
        F("group_instance_id", STRING, "3+", nullable="3+", default=None),
        F("assignments", Array(Struct(F("member_id", STRING), F("assignment", BYTES)))),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("assignment", BYTES),
    ),
)

HEARTBEAT = Api(
    12,
    "Heartbeat",
    0,
    3,
    4,
    request=Struct(
        F("group_id", STRING),
        F("generation_id", INT32),
        F("member_id", STRING),
        F("group_instance_id", STRING, "3+", nullable="3+", default=None),
    ),
    response=Struct(F("throttle_time_ms", INT32, "1+"), F("error_code", INT16)),
)

LEAVE_GROUP = Api(
    13,
    "LeaveGroup",
    0,
    1,
    4,
    request=Struct(F("group_id", STRING), F("member_id", STRING)),
    response=Struct(F("throttle_time_ms", INT32, "1+"), F("error_code", INT16)),
)

OFFSET_COMMIT = Api(
    8,
    "OffsetCommit",
    2,
    7,
    8,
    request=Struct(
        F("group_id", STRING),
        F("generation_id_or_member_epoch", INT32, "1+", default=-1),
        F("member_id", STRING, "1+"),
        F("group_instance_id", STRING, "7+", nullable="7+", default=None),
        F("retention_time_ms", INT64, "2-4", default=-1),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("partition_index", INT32),
                                F("committed_offset", INT64),
                                F("committed_leader_epoch", INT32, "6+", default=-1),
                                F("committed_metadata", STRING, nullable="0+"),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "3+"),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F("partitions", Array(Struct(F("partition_index", INT32), F("error_code", INT16)))),
                )
            ),
        ),
    ),
)

OFFSET_FETCH = Api(
    9,
    "OffsetFetch",
    1,
    5,
    6,
    request=Struct(
        F("group_id", STRING),
        F("topics", Array(Struct(F("name", STRING), F("partition_indexes", Array(INT32)))), nullable="2+"),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "3+"),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F(
                        "partitions",
                        Array(
                            Struct(
                                F("partition_index", INT32),
                                F("committed_offset", INT64),
                                F("committed_leader_epoch", INT32, "5+", default=-1),
                                F("metadata", STRING, nullable="0+"),
                                F("error_code", INT16),
                            )
                        ),
                    ),
                )
            ),
        ),
        F("error_code", INT16, "2+"),
    ),
)

INIT_PRODUCER_ID = Api(
    22,
    "InitProducerId",
    0,
    1,
    2,
    request=Struct(
        F("transactional_id", STRING, nullable="0+"),
        F("transaction_timeout_ms", INT32),
    ),
    response=Struct(
        F("throttle_time_ms", INT32),
        F("error_code", INT16),
        F("producer_id", INT64, default=-1),
        F("producer_epoch", INT16),
    ),
)

CREATE_TOPICS = Api(
    19,
    "CreateTopics",
    2,
    4,
    5,
    request=Struct(
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F("num_partitions", INT32),
                    F("replication_factor", INT16),
                    F(
                        "assignments",
                        Array(Struct(F("partition_index", INT32), F("broker_ids", Array(INT32)))),
                    ),
                    F("configs", Array(Struct(F("name", STRING), F("value", STRING, nullable="0+")))),
                )
            ),
        ),
        F("timeout_ms", INT32, default=60000),
        F("validate_only", BOOL, "1+"),
    ),
    response=Struct(
        F("throttle_time_ms", INT32, "2+"),
        F(
            "topics",
            Array(
                Struct(
                    F("name", STRING),
                    F("error_code", INT16),
                    F("error_message", STRING, "1+", nullable="0+", default=None),
                )
            ),
        ),
    ),
)

DELETE_TOPICS = Api(
    20,
    "DeleteTopics",
    0,
    3,
    4,
    request=Struct(F("topic_names", Array(STRING)), F("timeout_ms", INT32)),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F("responses", Array(Struct(F("name", STRING), F("error_code", INT16)))),
    ),
)

DESCRIBE_CONFIGS = Api(
    32,
    "DescribeConfigs",
    1,
    3,
    4,
    request=Struct(
        F(
            "resources",
            Array(
                Struct(
                    F("resource_type", INT8),
                    F("resource_name", STRING),
                    F("configuration_keys", Array(STRING), nullable="0+"),
                )
            ),
        ),
        F("include_synonyms", BOOL, "1+"),
        F("include_documentation", BOOL, "3+"),
    ),
    response=Struct(
        F("throttle_time_ms", INT32),
        F(
            "results",
            Array(
                Struct(
                    F("error_code", INT16),
                    F("error_message", STRING, nullable="0+", default=None),
                    F("resource_type", INT8),
                    F("resource_name", STRING),
                    F(
                        "configs",
                        Array(
                            Struct(
                                F("name", STRING),
                                F("value", STRING, nullable="0+"),
                                F("read_only", BOOL),
                                F("config_source", INT8, "1+", default=-1),
                                F("is_sensitive", BOOL),
                                F(
                                    "synonyms",
                                    Array(
                                        Struct(
                                            F("name", STRING),
                                            F("value", STRING, nullable="0+"),
                                            F("source", INT8),
                                        )
                                    ),
                                    "1+",
                                ),
                                F("config_type", INT8, "3+"),
                                F("documentation", STRING, "3+", nullable="0+", default=None),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

LIST_GROUPS = Api(
    16,
    "ListGroups",
    0,
    2,
    3,
    request=Struct(),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F("error_code", INT16),
        F("groups", Array(Struct(F("group_id", STRING), F("protocol_type", STRING)))),
    ),
)

DESCRIBE_GROUPS = Api(
    15,
    "DescribeGroups",
    0,
    4,
    5,
    request=Struct(F("groups", Array(STRING)), F("include_authorized_operations", BOOL, "3+")),
    response=Struct(
        F("throttle_time_ms", INT32, "1+"),
        F(
            "groups",
            Array(
                Struct(
                    F("error_code", INT16),
                    F("group_id", STRING),
                    F("group_state", STRING),
                    F("protocol_type", STRING),
                    F("protocol_data", STRING),
                    F(
                        "members",
                        Array(
                            Struct(
                                F("member_id", STRING),
                                F("group_instance_id", STRING, "4+", nullable="4+", default=None),
                                F("client_id", STRING),
                                F("client_host", STRING),
                                F("member_metadata", BYTES),
                                F("member_assignment", BYTES),
                            )
                        ),
                    ),
                    F("authorized_operations", INT32, "3+", default=-(2**31)),
                )
            ),
        ),
    ),
)

_ALTER_CONFIGS_RESPONSE = Struct(
    F("throttle_time_ms", INT32),
    F(
        "responses",
        Array(
            Struct(
                F("error_code", INT16),
                F("error_message", STRING, nullable="0+", default=None),
                F("resource_type", INT8),
                F("resource_name", STRING),
            )
        ),
    ),
)

# Topic settings changed at runtime: every listed setting (the others go back to their defaults).
ALTER_CONFIGS = Api(
    33,
    "AlterConfigs",
    0,
    1,
    None,
    request=Struct(
        F(
            "resources",
            Array(
                Struct(
                    F("resource_type", INT8),
                    F("resource_name", STRING),
                    F("configs", Array(Struct(F("name", STRING), F("value", STRING, nullable="0+")))),
                )
            ),
        ),
        F("validate_only", BOOL),
    ),
    response=_ALTER_CONFIGS_RESPONSE,
)

# Topic settings changed at runtime, one operation per setting (0 set, 1 delete).
INCREMENTAL_ALTER_CONFIGS = Api(
    44,
    "IncrementalAlterConfigs",
    0,
    1,
    1,
    request=Struct(
        F(
            "resources",
            Array(
                Struct(
                    F("resource_type", INT8),
                    F("resource_name", STRING),
                    F(
                        "configs",
                        Array(
                            Struct(
                                F("name", STRING),
                                F("config_operation", INT8),
                                F("value", STRING, nullable="0+"),
                            )
                        ),
                    ),
                )
            ),
        ),
        F("validate_only", BOOL),
    ),
    response=_ALTER_CONFIGS_RESPONSE,
)

# SASL (served when the broker requires a login). After a v1 handshake the mechanism's tokens
# travel in SaslAuthenticate requests; after a v0 one (KIP-152's legacy framing) as bare
# size-delimited frames, until the login completes (`KafkaProtocol` switches). v0 is served
# because librdkafka before 2.12 (Debian's kcat has 2.0.2) turns SASL on only when the range
# advertised includes v0, though it then logs in with v1.
SASL_HANDSHAKE = Api(
    17,
    "SaslHandshake",
    0,
    1,
    None,
    request=Struct(F("mechanism", STRING)),
    response=Struct(F("error_code", INT16), F("mechanisms", Array(STRING))),
)

SASL_AUTHENTICATE = Api(
    36,
    "SaslAuthenticate",
    0,
    2,
    2,
    request=Struct(F("auth_bytes", BYTES)),
    response=Struct(
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
        F("auth_bytes", BYTES),
        F("session_lifetime_ms", INT64, "1+", default=0),
    ),
)

#: Every API served, by key.
APIS: dict[int, Api] = {
    api.key: api
    for api in (
        PRODUCE,
        FETCH,
        LIST_OFFSETS,
        METADATA,
        OFFSET_COMMIT,
        OFFSET_FETCH,
        FIND_COORDINATOR,
        JOIN_GROUP,
        HEARTBEAT,
        LEAVE_GROUP,
        SYNC_GROUP,
        DESCRIBE_GROUPS,
        LIST_GROUPS,
        API_VERSIONS,
        CREATE_TOPICS,
        DELETE_TOPICS,
        INIT_PRODUCER_ID,
        DESCRIBE_CONFIGS,
        SASL_HANDSHAKE,
        SASL_AUTHENTICATE,
        ALTER_CONFIGS,
        INCREMENTAL_ALTER_CONFIGS,
    )
}


def api_named(name: str) -> Api:
    for api in APIS.values():
        if api.name == name:
            return api
    raise KeyError(name)


# The consumer protocol's payloads inside JoinGroup/SyncGroup (opaque to the broker, decoded
# only to show assignments): non-flexible, with their own int16 version first.
CONSUMER_SUBSCRIPTION = Struct(
    F("topics", Array(STRING)),
    F("user_data", BYTES, nullable="0+", default=None),
    F("owned_partitions", Array(_TOPIC_PARTITIONS), "1+"),
    F("generation_id", INT32, "2+", default=-1),
    F("rack_id", STRING, "3+", nullable="3+", default=None),
)
CONSUMER_ASSIGNMENT = Struct(
    F("assigned_partitions", Array(_TOPIC_PARTITIONS)),
    F("user_data", BYTES, nullable="0+", default=None),
)

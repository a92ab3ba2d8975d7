"""AlterConfigs and IncrementalAlterConfigs: topic settings changed at runtime from kafka-python's
and confluent-kafka's admin clients, read back with DescribeConfigs (which answers each resource
once, and only for this broker)."""

from __future__ import annotations

import pytest
import trio
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient

import logbroker
from logbroker.errors import InvalidConfigError
from logbroker.kafka.apis import ALTER_CONFIGS, DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS
from logbroker.testing import RunningBroker

from .wire import Wire

INVALID_REQUEST = 42


def create(broker: RunningBroker, topic: str, config: dict[str, str] | None = None) -> None:
    async def run() -> None:
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic(topic, config=config)

    trio.run(run)


def config_of(broker: RunningBroker, topic: str) -> dict[str, str]:
    return broker.broker.describe_topic(topic).config


@pytest.mark.parametrize("incremental", [True, False])
def test_kafka_python_alters_topic_settings(kafka_broker: RunningBroker, incremental: bool) -> None:
    create(kafka_broker, "t", {"retention.ms": "1000"})
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.kafka_address)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, "t", configs={"retention.bytes": "5000"})
        admin.alter_configs([resource], incremental=incremental)
        config = config_of(kafka_broker, "t")
        assert config["retention.bytes"] == "5000"
        # AlterConfigs replaces the whole set, so kafka-python sends the other modified keys
        # along; either way retention.ms keeps its value.
        assert config["retention.ms"] == "1000"
        if incremental:
            reset = ConfigResource(
                ConfigResourceType.TOPIC, "t", configs={"retention.ms": (AlterConfigOp.DELETE, None)}
            )
            admin.alter_configs([reset], incremental=True)
            assert config_of(kafka_broker, "t")["retention.ms"] == str(7 * 24 * 3600 * 1000)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "t")])
        assert "5000" in str(described)
    finally:
        admin.close()


def test_confluent_incremental_alter_configs(kafka_broker: RunningBroker) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry
    from confluent_kafka.admin import ConfigResource as Resource

    create(kafka_broker, "c")
    admin = AdminClient({"bootstrap.servers": kafka_broker.kafka_address})
    resource = Resource(
        confluent_kafka.admin.ResourceType.TOPIC,
        "c",
        incremental_configs=[ConfigEntry("segment.ms", "60000", incremental_operation=AlterConfigOpType.SET)],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    assert config_of(kafka_broker, "c")["segment.ms"] == "60000"
    bad = Resource(
        confluent_kafka.admin.ResourceType.TOPIC,
        "c",
        incremental_configs=[ConfigEntry("segment.bytes", "1", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(confluent_kafka.KafkaException, match=r"segment\.bytes"):
        for future in admin.incremental_alter_configs([bad]).values():
            future.result(timeout=30)
    assert config_of(kafka_broker, "c")["segment.bytes"] == str(1 << 30)


def test_each_resource_is_answered_on_its_own(kafka_broker: RunningBroker) -> None:
    create(kafka_broker, "ok")
    resources = [
        {"resource_type": 2, "resource_name": "ok", "configs": [{"name": "retention.ms", "value": "5"}]},
        {"resource_type": 2, "resource_name": "missing", "configs": []},
        {"resource_type": 4, "resource_name": "0", "configs": [{"name": "num.partitions", "value": "3"}]},
        {"resource_type": 2, "resource_name": "ok2", "configs": [{"name": "x", "value": "1"}]},
    ]
    with Wire(kafka_broker) as wire:
        answer = wire.call(ALTER_CONFIGS, 1, {"resources": resources, "validate_only": False})
        codes = [r["error_code"] for r in answer["responses"]]
        assert codes[0] == 0 and all(codes[1:])
        assert config_of(kafka_broker, "ok")["retention.ms"] == "5"
        operations = [{"name": "retention.ms", "config_operation": 2, "value": "1"}]  # APPEND
        answer = wire.call(
            INCREMENTAL_ALTER_CONFIGS,
            1,
            {
                "resources": [{"resource_type": 2, "resource_name": "ok", "configs": operations}],
                "validate_only": False,
            },
        )
        assert answer["responses"][0]["error_code"] == InvalidConfigError.code


def test_a_resource_or_setting_named_twice_is_refused(kafka_broker: RunningBroker) -> None:
    """As Kafka does: applied in turn, the second would silently undo the first."""
    create(kafka_broker, "twice")
    resource = {
        "resource_type": 2,
        "resource_name": "twice",
        "configs": [{"name": "retention.ms", "value": "5"}],
    }
    doubled = {
        **resource,
        "configs": [{"name": "retention.ms", "value": "5"}, {"name": "retention.ms", "value": "6"}],
    }
    with Wire(kafka_broker) as wire:
        answer = wire.call(ALTER_CONFIGS, 1, {"resources": [resource, resource], "validate_only": False})
        assert [r["error_code"] for r in answer["responses"]] == [42, 42]
        answer = wire.call(ALTER_CONFIGS, 1, {"resources": [doubled], "validate_only": False})
        assert [r["error_code"] for r in answer["responses"]] == [42]
    assert config_of(kafka_broker, "twice")["retention.ms"] == str(7 * 24 * 3600 * 1000)


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

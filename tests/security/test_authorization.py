"""ACLs enforced on both listeners (issue 7): deny by default, each operation allowed and denied,
prefix patterns, deny over allow, lists filtered, super users, dead-letter topics guarded."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kafka
import kafka.admin
import kafka.errors
import pytest
import trio

import logbroker
from logbroker.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from logbroker.kafka.apis import CREATE_TOPICS, DESCRIBE_CONFIGS, INIT_PRODUCER_ID, METADATA, PRODUCE
from logbroker.protocol.messages import CommitOffset, FetchPartition, GroupPoll, Heartbeat, LeaveGroup, Nack
from logbroker.records.codec import encode_batch
from logbroker.security.acls import AclRule, AclStore
from logbroker.testing import BrokerThread, RunningBroker, run_broker

from ..kafka.wire import Wire, produce_body
from .conftest import USERS, login_settings
from .test_quotas_enforced import kafka_login as kafka_scram_login

Client = logbroker.Client


def rule(
    operation: str, resource_type: str, name: str, pattern: str = "literal", permission: str = "allow"
) -> AclRule:
    return AclRule("User:alice", operation, resource_type, name, pattern, permission)


@pytest.fixture
async def secured(security_dir: str) -> AsyncIterator[tuple[RunningBroker, AclStore]]:
    """A broker requiring logins and checking ACLs; bob is a super user, alice has no rules."""
    settings = login_settings(security_dir, authorize=True, super_users="User:bob", kafka_port=-1)
    async with run_broker(group_initial_delay=0.0, **settings) as broker:
        async with await logbroker.connect(broker.address, username="bob", password=USERS["bob"]) as bob:
            for name in ("orders", "orders.eu", "ordersx", "secret.a", "public"):
                await bob.create_topic(name)
                await bob.produce(name, [b"r0"])
        yield broker, AclStore(security_dir)


def grant(broker: RunningBroker, store: AclStore, *rules: AclRule) -> None:
    for one in rules:
        store.add(one)
    broker.server.security.refresh()  # what the server does every second


async def as_alice(broker: RunningBroker) -> Client:
    return await logbroker.connect(broker.address, username="alice", password=USERS["alice"])


async def read_one(client: Client, topic: str) -> bytes | None:
    consumer = client.consumer(topic)
    return (await consumer.__anext__()).value


async def test_everything_is_denied_by_default(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, _ = secured
    async with await as_alice(broker) as alice:
        assert await alice.list_topics() == []
        assert await alice.list_groups() == []
        with pytest.raises(TopicAuthorizationFailedError, match="may not write topic 'orders'"):
            await alice.produce("orders", [b"x"])
        with pytest.raises(TopicAuthorizationFailedError):
            await read_one(alice, "orders")
        with pytest.raises(TopicAuthorizationFailedError):
            await alice.create_topic("mine")
        with pytest.raises(TopicAuthorizationFailedError):
            await alice.describe_topic("orders")
    assert broker.broker.log("orders", 0).next_offset == 1  # nothing was written
    assert not broker.broker.has_topic("mine")


Action = Callable[[Client], Awaitable[Any]]


async def produce(client: Client) -> Any:
    return await client.produce("orders", [b"x"])


async def fetch(client: Client) -> Any:
    return await read_one(client, "orders")


async def create(client: Client) -> Any:
    return await client.create_topic("orders.new")


async def delete(client: Client) -> Any:
    return await client.delete_topic("orders")


async def describe(client: Client) -> Any:
    await client.describe_topic("orders")
    return await client.list_offset("orders", 0, "latest")


async def reset(client: Client) -> Any:
    return await client.reset_offsets("g", "orders", "earliest")


# operation granted -> (what it allows, something it does not)
OPERATIONS: dict[str, tuple[list[AclRule], Action, Action]] = {
    "write": ([rule("write", "topic", "orders")], produce, fetch),
    "read": ([rule("read", "topic", "orders")], fetch, produce),
    "create": ([rule("create", "topic", "orders.new")], create, delete),
    "delete": ([rule("delete", "topic", "orders")], delete, create),
    "describe": ([rule("describe", "topic", "orders")], describe, fetch),
    "alter": (
        [rule("alter", "group", "g"), rule("describe", "topic", "orders")],
        reset,
        produce,
    ),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_each_operation_allows_only_itself(
    secured: tuple[RunningBroker, AclStore], operation: str
) -> None:
    broker, store = secured
    rules, allowed, denied = OPERATIONS[operation]
    async with await as_alice(broker) as alice:
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            await allowed(alice)
        grant(broker, store, *rules)
        await allowed(alice)
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            await denied(alice)


async def test_create_on_the_cluster_allows_any_topic(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, store = secured
    grant(broker, store, rule("create", "cluster", "kafka-cluster"))
    async with await as_alice(broker) as alice:
        await alice.create_topic("anything")


async def test_prefix_patterns(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, store = secured
    grant(broker, store, rule("write", "topic", "orders.", "prefix"))
    async with await as_alice(broker) as alice:
        await alice.produce("orders.eu", [b"x"])
        for other in ("orders", "ordersx"):
            with pytest.raises(TopicAuthorizationFailedError):
                await alice.produce(other, [b"x"])
        assert [t.name for t in await alice.list_topics()] == ["orders.eu"]  # write implies describe


async def test_a_deny_wins_over_an_allow(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, store = secured
    grant(
        broker,
        store,
        rule("read", "topic", "*"),
        rule("read", "topic", "secret.", "prefix", permission="deny"),
    )
    async with await as_alice(broker) as alice:
        assert await read_one(alice, "public") == b"r0"
        with pytest.raises(TopicAuthorizationFailedError):
            await read_one(alice, "secret.a")


async def test_a_group_member_needs_the_group_the_topic_and_its_dead_letter_topic(
    secured: tuple[RunningBroker, AclStore],
) -> None:
    broker, store = secured
    grant(broker, store, rule("read", "topic", "orders"))
    async with await as_alice(broker) as alice:
        with pytest.raises(GroupAuthorizationFailedError):
            async with alice.group_consumer("g", "orders"):
                pass
        grant(broker, store, rule("read", "group", "g"))
        # Poison records are copied to dlq.g.orders on the member's behalf: it must be allowed
        # to write there itself (KIP-1191's reasoning).
        with pytest.raises(TopicAuthorizationFailedError, match=r"dlq\.g\.orders"):
            async with alice.group_consumer("g", "orders"):
                pass
        grant(broker, store, rule("write", "topic", "dlq.g.", "prefix"))
        async with alice.group_consumer("g", "orders") as member:
            message = await member.__anext__()
            assert message.value == b"r0"
            await message.ack()
            await member.commit()
        assert [g.name for g in await alice.list_groups()] == ["g"]
        rows = await alice.group_offsets("g")
        assert [(r.topic, r.committed) for r in rows] == [("orders", 1)]


async def test_super_users_and_internal_topics(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, store = secured
    async with await logbroker.connect(broker.address, username="bob", password=USERS["bob"]) as bob:
        assert {t.name for t in await bob.list_topics()} >= {"orders", "secret.a"}
    grant(broker, store, rule("all", "topic", "*"))
    async with await as_alice(broker) as alice:
        with pytest.raises(InvalidTopicError):  # the broker's own topic takes nothing from clients
            await alice.produce("__offsets", [b"forged"])


async def test_anonymous_principal_without_logins(tmp_path: Any) -> None:
    """With ACLs but no logins, every connection is User:ANONYMOUS."""
    store = AclStore(str(tmp_path))
    store.add(AclRule("User:ANONYMOUS", "write", "topic", "open"))
    async with run_broker(authorize=True, security_dir=str(tmp_path), auto_create_topics=False) as broker:
        broker.broker.create_topic("open", 1, now_ms=0)
        broker.broker.create_topic("closed", 1, now_ms=0)
        async with await logbroker.connect(broker.address) as client:
            await client.produce("open", [b"x"])
            with pytest.raises(TopicAuthorizationFailedError):
                await client.produce("closed", [b"x"])


# -- the Kafka listener ----------------------------------------------------------------------------


def kafka_login(user: str) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": user,
        "sasl_plain_password": USERS[user],
    }


@pytest.fixture
def kafka_secured(security_dir: str) -> Any:
    settings = login_settings(security_dir, authorize=True, super_users="User:bob")
    with BrokerThread(**settings) as broker:

        async def create() -> None:
            async with await logbroker.connect(broker.address, username="bob", password=USERS["bob"]) as bob:
                for name in ("k.allowed", "k.denied"):
                    await bob.create_topic(name)

        trio.run(create)
        yield broker, AclStore(security_dir)


def grant_now(broker: RunningBroker, store: AclStore, *rules: AclRule) -> None:
    for one in rules:
        store.add(one)
    broker.server.security.refresh()  # a plain call: the files are re-read, nothing awaits


def test_kafka_produce_and_fetch_per_topic(kafka_secured: Any) -> None:
    broker, store = kafka_secured
    grant_now(broker, store, rule("write", "topic", "k.allowed"), rule("read", "topic", "k.allowed"))
    producer = kafka.KafkaProducer(bootstrap_servers=broker.kafka_address, **kafka_login("alice"))
    producer.send("k.allowed", b"yes").get(timeout=30)
    with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
        producer.send("k.denied", b"no").get(timeout=30)
    producer.close()
    assert broker.broker.log("k.denied", 0).next_offset == 0
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=broker.kafka_address, consumer_timeout_ms=10_000, **kafka_login("alice")
    )
    consumer.assign([kafka.TopicPartition("k.allowed", 0)])
    consumer.seek_to_beginning()
    assert next(iter(consumer)).value == b"yes"
    # Seen (describe) but not readable: the fetch itself is refused.
    grant_now(broker, store, rule("describe", "topic", "k.denied"))
    consumer.assign([kafka.TopicPartition("k.denied", 0)])
    with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
        for _ in range(5):
            consumer.poll(timeout_ms=2000)
    consumer.close()


def test_kafka_group_needs_read_on_the_group(kafka_secured: Any) -> None:
    broker, store = kafka_secured
    grant_now(broker, store, rule("read", "topic", "k.allowed"))
    consumer = kafka.KafkaConsumer(
        "k.allowed", group_id="kg", bootstrap_servers=broker.kafka_address, **kafka_login("alice")
    )
    with pytest.raises(kafka.errors.GroupAuthorizationFailedError):
        for _ in range(5):
            consumer.poll(timeout_ms=2000)
    consumer.close()
    grant_now(broker, store, rule("read", "group", "kg"))
    producer = kafka.KafkaProducer(bootstrap_servers=broker.kafka_address, **kafka_login("bob"))
    producer.send("k.allowed", b"v").get(timeout=30)
    producer.close()
    consumer = kafka.KafkaConsumer(
        "k.allowed",
        group_id="kg",
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        bootstrap_servers=broker.kafka_address,
        **kafka_login("alice"),
    )
    assert next(iter(consumer)).value == b"v"
    consumer.commit()
    consumer.close()


def test_kafka_admin_create_delete_describe(kafka_secured: Any) -> None:
    broker, store = kafka_secured
    admin = kafka.admin.KafkaAdminClient(bootstrap_servers=broker.kafka_address, **kafka_login("alice"))
    try:
        assert admin.list_topics() == []  # describe nothing: see nothing
        with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
            admin.create_topics([kafka.admin.NewTopic("k.new", 1, 1)], raise_errors=True)
        assert not broker.broker.has_topic("k.new")
        grant_now(
            broker, store, rule("create", "topic", "k.", "prefix"), rule("describe", "topic", "k.allowed")
        )
        admin.create_topics([kafka.admin.NewTopic("k.new", 1, 1)], raise_errors=True)
        assert sorted(admin.list_topics()) == ["k.allowed"]  # create implies nothing else
        with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
            admin.delete_topics(["k.new"], raise_errors=True)
        grant_now(broker, store, rule("delete", "topic", "k.new"))
        admin.delete_topics(["k.new"], raise_errors=True)
        assert not broker.broker.has_topic("k.new")
    finally:
        admin.close()


async def test_a_member_id_is_no_key_to_another_principals_records(
    secured: tuple[RunningBroker, AclStore],
) -> None:
    """Found in review: mallory, with read on the group only, polled alice's member id and got
    records of a topic she may not read."""
    broker, store = secured
    grant(broker, store, rule("read", "topic", "secret.a"), rule("read", "group", "g"))
    grant(broker, store, rule("write", "topic", "dlq.g.", "prefix"))
    async with await as_alice(broker) as alice, alice.group_consumer("g", "secret.a") as member:
        member_id = member.member_id
        async with await logbroker.connect(broker.address, username="bob", password=USERS["bob"]) as other:
            # bob is a super user here: even so, a member id is bound to whoever joined with it.
            for request in (
                GroupPoll("g", member_id, max_wait_ms=0),
                Heartbeat("g", member_id),
                Nack("g", member_id, 1, "secret.a", 0, 0),
                CommitOffset("g", member_id, 1, "secret.a", 0, 1),
                LeaveGroup("g", member_id),
            ):
                with pytest.raises(UnknownMemberIdError):
                    await other.request(request)
        message = await member.__anext__()  # alice's own membership still works
        assert message.value == b"r0"


async def test_requests_that_would_auto_create_need_create(security_dir: str) -> None:
    """Found in review: with auto-creation on, a produce created topics the principal had no
    create right for. (A consumer's requests create no topic, create right or not.)"""
    store = AclStore(security_dir)
    for operation in ("read", "write", "describe"):
        store.add(rule(operation, "topic", "r.", "prefix"))
    store.add(rule("read", "group", "g"))
    store.add(rule("write", "topic", "dlq.g.", "prefix"))
    settings = login_settings(security_dir, authorize=True, kafka_port=-1)
    async with run_broker(group_initial_delay=0.0, **settings) as broker, await as_alice(broker) as alice:
        producing: list[Callable[[], Awaitable[Any]]] = [
            lambda: alice.produce("r.by-produce", [b"x"]),
            lambda: alice.describe_topic("r.by-describe", allow_auto_create=True),
        ]
        for attempt in producing:
            with pytest.raises(TopicAuthorizationFailedError, match="may not create"):
                await attempt()
        assert [t.name for t in broker.broker.list_topics()] == []
        store.add(rule("create", "topic", "r.", "prefix"))
        broker.server.security.refresh()
        with pytest.raises(UnknownTopicOrPartitionError):
            await alice.list_offset("r.by-list-offsets", 0, "latest")
        fetched, _ = await alice.fetch([FetchPartition("r.by-fetch", 0, 0)], max_wait_ms=0)
        assert fetched.partitions[0].error_code == UnknownTopicOrPartitionError.code
        with pytest.raises(UnknownTopicOrPartitionError):
            async with alice.group_consumer("g", "r.by-join"):
                pass
        assert [t.name for t in broker.broker.list_topics()] == []
        await alice.produce("r.by-produce", [b"x"])  # now it may
        assert broker.broker.has_topic("r.by-produce")


async def test_group_listings_hide_topics_the_principal_may_not_describe(
    secured: tuple[RunningBroker, AclStore],
) -> None:
    broker, store = secured
    bob = await logbroker.connect(broker.address, username="bob", password=USERS["bob"])
    async with bob, bob.group_consumer("g", ["orders", "secret.a"]) as member:
        await member.__anext__()
        grant(broker, store, rule("describe", "group", "g"), rule("describe", "topic", "orders"))
        async with await as_alice(broker) as alice:
            [summary] = await alice.list_groups()
            assert summary.topics == ["orders"]
            description = await alice.describe_group("g")
            assert {t for m in description.members for t in m.topics} == {"orders"}
            assert {ref.topic for m in description.members for ref in m.assignment} <= {"orders"}
            assert {row.topic for row in description.partitions} == {"orders"}


def test_kafka_metadata_v0_of_all_topics_is_filtered(kafka_secured: Any) -> None:
    """Found in review: Metadata v0 asks for every topic with an empty list, and got them all."""
    broker, store = kafka_secured
    grant_now(broker, store, rule("describe", "topic", "k.allowed"))
    with Wire(broker) as wire:
        kafka_scram_login(wire, "alice")
        answer = wire.call(METADATA, 0, {"topics": []})
        assert [t["name"] for t in answer["topics"]] == ["k.allowed"]
        answer = wire.call(METADATA, 4, {"topics": None, "allow_auto_topic_creation": False})
        assert [t["name"] for t in answer["topics"]] == ["k.allowed"]
        answer = wire.call(
            METADATA,
            4,
            {"topics": [{"name": "k.allowed"}, {"name": "k.denied"}], "allow_auto_topic_creation": False},
        )
        assert {t["name"]: t["error_code"] for t in answer["topics"]} == {
            "k.allowed": 0,
            "k.denied": TopicAuthorizationFailedError.code,
        }


def test_a_security_file_that_cannot_be_read_keeps_the_rules(
    kafka_secured: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broker, store = kafka_secured
    grant_now(broker, store, rule("describe", "topic", "k.allowed"))
    os.replace(store.path, store.path + ".saved")
    os.mkdir(store.path)  # reading it now fails with IsADirectoryError
    try:
        broker.server.security.refresh()
    except OSError:
        pass  # the watch loop catches and logs this; what matters is what it keeps
    with Wire(broker) as wire:
        kafka_scram_login(wire, "alice")
        answer = wire.call(METADATA, 4, {"topics": None, "allow_auto_topic_creation": False})
        assert [t["name"] for t in answer["topics"]] == ["k.allowed"]


def test_kafka_alter_configs_needs_alter(kafka_secured: Any) -> None:
    broker, store = kafka_secured
    grant_now(broker, store, rule("describe", "topic", "k.allowed"))
    admin = kafka.admin.KafkaAdminClient(bootstrap_servers=broker.kafka_address, **kafka_login("alice"))
    resource = kafka.admin.ConfigResource(
        kafka.admin.ConfigResourceType.TOPIC, "k.allowed", configs={"retention.ms": "60000"}
    )
    try:
        result = admin.alter_configs([resource], incremental=True, raise_on_unknown=False)
        assert "TopicAuthorizationFailed" in str(result)
        assert broker.broker.describe_topic("k.allowed").config["retention.ms"] != "60000"
        grant_now(broker, store, rule("alter", "topic", "k.allowed"))
        admin.alter_configs([resource], incremental=True, raise_on_unknown=False)
        assert broker.broker.describe_topic("k.allowed").config["retention.ms"] == "60000"
    finally:
        admin.close()


async def test_native_alter_topic_needs_alter(secured: tuple[RunningBroker, AclStore]) -> None:
    broker, store = secured
    async with await as_alice(broker) as alice:
        with pytest.raises(TopicAuthorizationFailedError, match="may not alter"):
            await alice.alter_topic("orders", {"retention.ms": 60_000})
        grant(broker, store, rule("alter", "topic", "orders"))
        assert (await alice.alter_topic("orders", {"retention.ms": 60_000})).config["retention.ms"] == "60000"


def test_kafka_admin_requests_are_answered_item_by_item(kafka_secured: Any) -> None:
    """As Kafka does: in one CreateTopics (or DeleteTopics, DescribeConfigs, AlterConfigs,
    DescribeGroups), the items the principal may touch are served and the others refused."""
    broker, store = kafka_secured
    grant_now(broker, store, rule("create", "topic", "k.mine"), rule("describe", "topic", "k.allowed"))
    topic = {"num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}
    with Wire(broker) as wire:
        kafka_scram_login(wire, "alice")
        answer = wire.call(
            CREATE_TOPICS,
            4,
            {
                "topics": [{"name": "k.mine", **topic}, {"name": "k.theirs", **topic}],
                "timeout_ms": 5000,
                "validate_only": False,
            },
        )
        assert {t["name"]: t["error_code"] for t in answer["topics"]} == {
            "k.mine": 0,
            "k.theirs": TopicAuthorizationFailedError.code,
        }
        resources = [
            {"resource_type": 2, "resource_name": name, "configuration_keys": None}
            for name in ("k.allowed", "k.denied")
        ] + [{"resource_type": 4, "resource_name": "0", "configuration_keys": None}]
        answer = wire.call(
            DESCRIBE_CONFIGS,
            1,
            {"resources": resources, "include_synonyms": False, "include_documentation": False},
        )
        assert {r["resource_name"]: r["error_code"] for r in answer["results"]} == {
            "k.allowed": 0,
            "k.denied": TopicAuthorizationFailedError.code,
            "0": 31,  # the broker's settings: describe on the cluster
        }
    assert broker.broker.has_topic("k.mine") and not broker.broker.has_topic("k.theirs")


def test_kafka_metadata_creates_nothing_when_one_missing_topic_may_not_be_created(security_dir: str) -> None:
    """Metadata with auto-creation allowed: the topics named are created only when the principal
    may create every missing one; a topic it may not describe is answered after the others."""
    store = AclStore(security_dir)
    store.add(rule("describe", "topic", "m.", "prefix"))
    store.add(rule("create", "topic", "m.ok"))
    settings = login_settings(security_dir, authorize=True, auto_create_topics=True)
    with BrokerThread(**settings) as broker, Wire(broker) as wire:
        kafka_scram_login(wire, "alice")
        asked = {
            "topics": [{"name": n} for n in ("x.denied", "m.ok", "m.no")],
            "allow_auto_topic_creation": True,
        }
        answer = wire.call(METADATA, 4, asked)
        assert [(t["name"], t["error_code"]) for t in answer["topics"]] == [
            ("m.ok", 3),
            ("m.no", 3),
            ("x.denied", TopicAuthorizationFailedError.code),
        ]
        assert broker.broker.list_topics() == []
        answer = wire.call(METADATA, 4, {"topics": [{"name": "m.ok"}], "allow_auto_topic_creation": True})
        assert [(t["name"], t["error_code"], len(t["partitions"])) for t in answer["topics"]] == [
            ("m.ok", 0, 1)
        ]


def test_a_kafka_produce_creates_a_missing_topic_only_for_a_principal_that_may_create_it(
    security_dir: str,
) -> None:
    store = AclStore(security_dir)
    store.add(rule("write", "topic", "p.", "prefix"))
    store.add(rule("create", "topic", "p.mine"))
    with BrokerThread(**login_settings(security_dir, authorize=True)) as broker, Wire(broker) as wire:
        kafka_scram_login(wire, "alice")
        codes = {}
        for name in ("p.theirs", "p.mine"):
            answer = wire.call(PRODUCE, 7, produce_body(name, 0, encode_batch([b"x"])))
            codes[name] = answer["responses"][0]["partition_responses"][0]["error_code"]
        assert codes == {"p.theirs": TopicAuthorizationFailedError.code, "p.mine": 0}
        assert [t.name for t in broker.broker.list_topics()] == ["p.mine"]


def test_kafka_init_producer_id_checks_the_write_right_before_the_transactional_id(security_dir: str) -> None:
    with BrokerThread(**login_settings(security_dir, authorize=True)) as broker, Wire(broker) as wire:
        kafka_scram_login(wire, "alice")  # alice may write nowhere
        answer = wire.call(INIT_PRODUCER_ID, 1, {"transactional_id": "tx", "transaction_timeout_ms": 60000})
        assert (answer["error_code"], answer["producer_id"]) == (ClusterAuthorizationFailedError.code, -1)

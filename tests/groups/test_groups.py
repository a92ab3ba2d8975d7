"""Consumer groups end to end over loopback, every timeout driven by trio's autojump clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import logbroker
from logbroker.errors import IllegalGenerationError, NonEmptyGroupError, UnknownMemberIdError
from logbroker.protocol.messages import (
    CommitOffset,
    GroupPoll,
    GroupPollResponse,
    JoinGroup,
    JoinGroupResponse,
)
from logbroker.testing import run_broker

Clock = trio.abc.Clock


async def fill(client: logbroker.Client, topic: str, partitions: int, per_partition: int) -> None:
    await client.create_topic(topic, partitions=partitions)
    for p in range(partitions):
        await client.produce(topic, [b"%d-%d" % (p, i) for i in range(per_partition)], partition=p)


async def take(
    consumer: logbroker.GroupConsumer, n: int, *, ack: bool = True
) -> list[logbroker.GroupMessage]:
    got: list[logbroker.GroupMessage] = []
    while len(got) < n:
        for message in await consumer.poll():
            got.append(message)
            if ack:
                await message.ack()
    return got


async def test_fan_out_every_group_gets_every_record(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 3, 10)
        for group in ("billing", "audit"):
            async with client.group_consumer(group, "t") as consumer:
                got = await take(consumer, 30)
            assert sorted((m.partition, m.offset) for m in got) == [
                (p, o) for p in range(3) for o in range(10)
            ]
            assert all(m.delivery_count == 1 for m in got)


async def test_direct_members_split_the_partitions(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 6, 20)
        seen: dict[str, list[tuple[int, int]]] = {}
        async with (
            client.group_consumer("workers", "t") as a,
            client.group_consumer("workers", "t") as b,
            client.group_consumer("workers", "t") as c,
        ):
            async with trio.open_nursery() as nursery:

                async def work(name: str, consumer: logbroker.GroupConsumer) -> None:
                    with trio.move_on_after(5):
                        async for message in consumer:
                            seen.setdefault(name, []).append((message.partition, message.offset))
                            await message.ack()

                for name, consumer in (("a", a), ("b", b), ("c", c)):
                    nursery.start_soon(work, name, consumer)
            assignments = [set(x.assignment) for x in (a, b, c)]
        assert all(len(x) == 2 for x in assignments)  # joined together: one generation, 2 each
        assert set().union(*assignments) == {("t", p) for p in range(6)}
        records = [r for got in seen.values() for r in got]
        assert sorted(records) == [(p, o) for p in range(6) for o in range(20)]  # each once
        for name, got in seen.items():
            assert {p for p, _ in got} <= {p for _, p in assignments["abc".index(name)]}


async def test_ack_timeout_redelivers_exactly_the_uncommitted_records(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 1, 10)
        async with client.group_consumer("g", "t", ack_timeout=2) as consumer:
            first = await take(consumer, 10, ack=False)
            await first[3].ack()  # commits 0..3
            started = trio.current_time()
            again = await take(consumer, 6, ack=False)
            assert 1.999 <= trio.current_time() - started < 3
            assert [(m.offset, m.delivery_count) for m in again] == [(o, 2) for o in range(4, 10)]
            await again[-1].ack()
            description = await client.describe_group("g")
            assert description.partitions[0].committed == 10


async def test_nack_redelivers_at_once_or_after_its_delay(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 1, 6)
        async with client.group_consumer("g", "t", ack_timeout=60) as consumer:
            got = await take(consumer, 6, ack=False)
            await got[1].ack()
            await got[2].nack()
            again = await take(consumer, 4, ack=False)
            assert [(m.offset, m.delivery_count) for m in again] == [(2, 2), (3, 1), (4, 1), (5, 1)]
            await again[0].nack(delay=10)
            started = trio.current_time()
            later = await take(consumer, 4, ack=False)
            assert trio.current_time() - started >= 9.999
            assert [(m.offset, m.delivery_count) for m in later] == [(2, 3), (3, 1), (4, 1), (5, 1)]


async def test_a_poison_record_goes_to_the_dead_letter_topic(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("orders")
        await client.produce(
            "orders", [b"fine-0", b"poison", b"fine-2", b"fine-3"], keys=[None, b"k", None, None]
        )
        handled: list[bytes] = []
        async with client.group_consumer("billing", "orders", max_deliveries=3, ack_timeout=60) as consumer:
            while len(handled) < 3:
                for message in await consumer.poll():
                    if message.value == b"poison":
                        await message.nack()
                        break
                    handled.append(message.value or b"")
                    await message.ack()
        assert handled == [b"fine-0", b"fine-2", b"fine-3"]  # the others kept flowing
        letters = [m async for m in _read_all(client, "dlq.billing.orders", 1)]
        [letter] = letters
        assert (letter.key, letter.value) == (b"k", b"poison")
        headers = dict(letter.headers)
        assert headers["dlq.topic"] == b"orders" and headers["dlq.partition"] == b"0"
        assert headers["dlq.offset"] == b"1" and headers["dlq.group"] == b"billing"
        assert headers["dlq.delivery_count"] == b"3" and b"max deliveries 3" in (headers["dlq.reason"] or b"")
        assert (await client.describe_group("billing")).partitions[0].committed == 4


async def _read_all(client: logbroker.Client, topic: str, n: int):  # type: ignore[no-untyped-def]
    count = 0
    async for message in client.consumer(topic):
        yield message
        count += 1
        if count == n:
            return


async def test_a_silent_member_loses_its_partitions_and_is_fenced(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 2, 5)
        # A member driven by hand: it joins, takes records, then falls silent.
        joined, _ = await client.request(JoinGroup("g", ["t"], session_timeout_ms=3000))
        assert isinstance(joined, JoinGroupResponse)
        silent = joined.member_id
        polled, _ = await client.request(GroupPoll("g", silent, max_wait_ms=100))
        assert isinstance(polled, GroupPollResponse) and polled.partitions
        async with client.group_consumer("g", "t", session_timeout=3) as live:
            started = trio.current_time()
            got = await take(live, 10)
            assert trio.current_time() - started >= 2.999  # its partitions came once the session ended
            assert sorted((m.partition, m.offset) for m in got) == [
                (p, o) for p in range(2) for o in range(5)
            ]
            assert {
                (m.partition, m.delivery_count) for m in got if m.delivery_count > 1
            }  # redelivered, counted
            with pytest.raises(UnknownMemberIdError):
                await client.request(CommitOffset("g", silent, polled.generation, "t", 0, 5))
            assert (await client.describe_group("g")).partitions[0].committed == 5


async def test_rebalance_on_join_and_leave(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 4, 1)
        async with client.group_consumer("g", "t") as first:
            await first.poll()
            assert len(first.assignment) == 4
            generation = first.generation
            async with client.group_consumer("g", "t") as second:
                await second.poll()
                await first.poll()
                assert len(first.assignment) == 2 and len(second.assignment) == 2
                assert first.generation > generation
                assert not set(first.assignment) & set(second.assignment)
            await first.poll()
            assert len(first.assignment) == 4


async def test_commits_from_an_old_generation_are_refused(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 1, 3)
        joined, _ = await client.request(JoinGroup("g", ["t"]))
        assert isinstance(joined, JoinGroupResponse)
        await client.request(GroupPoll("g", joined.member_id, max_wait_ms=100))
        async with client.group_consumer("g", "t"):  # a new generation
            with pytest.raises(IllegalGenerationError):
                await client.request(CommitOffset("g", joined.member_id, joined.generation, "t", 0, 2))
        assert (await client.describe_group("g")).partitions[0].committed == 0


# With file storage the fsync runs in a worker thread, during which an autojump clock would leap
# over the ack wait: the tests that persist run on the real clock (they need no timeout).


async def test_commits_and_settings_survive_a_restart(tmp_path: Path) -> None:
    async with (
        run_broker(data_dir=str(tmp_path), group_initial_delay=0) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await fill(client, "t", 2, 5)
        async with client.group_consumer("g", "t", ack_timeout=7.5, max_deliveries=4) as consumer:
            got = await take(consumer, 10, ack=False)
            for m in got:
                if m.offset == 2:
                    await m.ack()
    async with (
        run_broker(data_dir=str(tmp_path), group_initial_delay=0) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        description = await client.describe_group("g")
        assert [p.committed for p in description.partitions] == [3, 3]
        assert (description.ack_timeout_ms, description.max_deliveries) == (7500, 4)
        async with client.group_consumer("g", "t") as consumer:
            again = await take(consumer, 4)
        assert sorted((m.partition, m.offset) for m in again) == [(p, o) for p in range(2) for o in (3, 4)]


async def test_offsets_compaction_keeps_the_latest_values(tmp_path: Path) -> None:
    async with (
        run_broker(data_dir=str(tmp_path), group_initial_delay=0) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await fill(client, "t", 1, 3000)
        async with client.group_consumer("g", "t") as consumer:
            await take(consumer, 3000)  # one commit per record
        store = broker.engine.coordinator.store
        before = store.log.next_offset
        assert store.needs_compaction()
        assert broker.engine.coordinator.maybe_compact(0)
        assert store.log.log_start_offset >= before  # the old records are gone
    async with (
        run_broker(data_dir=str(tmp_path)) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        assert (await client.describe_group("g")).partitions[0].committed == 3000
        assert (
            broker.engine.coordinator.store.log.next_offset
            - broker.engine.coordinator.store.log.log_start_offset
            < 10
        )


async def test_reset_offsets_only_without_members(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 2, 5)
        async with client.group_consumer("g", "t") as consumer:
            await take(consumer, 10)
            with pytest.raises(NonEmptyGroupError, match="member"):
                await client.reset_offsets("g", "t", "earliest")
        assert await client.reset_offsets("g", "t", "earliest") == {0: 0, 1: 0}
        assert await client.reset_offsets("g", "t", 3) == {0: 3, 1: 3}
        assert await client.reset_offsets("g", "t", "latest") == {0: 5, 1: 5}
        assert await client.reset_offsets("new", "t", timestamp=0) == {0: 0, 1: 0}
        rows = await client.group_offsets(topic="t")
        assert {(r.group, r.partition, r.committed, r.lag) for r in rows} == {
            ("g", 0, 5, 0),
            ("g", 1, 5, 0),
            ("new", 0, 0, 5),
            ("new", 1, 0, 5),
        }


async def test_deleting_a_topic_drops_its_offsets(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 1, 2)
        async with client.group_consumer("g", "t") as consumer:
            await take(consumer, 2)
        await client.delete_topic("t")
        assert await client.group_offsets("g") == []


async def test_a_cancelled_member_leaves_at_once(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        async with trio.open_nursery() as nursery:

            async def member() -> None:
                async with client.group_consumer("g", "t") as consumer:
                    async for _ in consumer:
                        pass

            nursery.start_soon(member)
            await trio.testing.wait_all_tasks_blocked()  # the member has joined and polls
            assert len((await client.describe_group("g")).members) == 1
            nursery.cancel_scope.cancel()
        assert (await client.describe_group("g")).members == []


async def test_records_received_but_not_taken_come_back_uncounted(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await fill(client, "t", 1, 10)
        async with client.group_consumer("g", "t") as consumer:
            taken = await consumer.poll(max_messages=3)  # the other 7 arrived too, but stay buffered
            await taken[-1].ack()
        async with client.group_consumer("g", "t") as consumer:
            rest = await take(consumer, 7)
        assert [(m.offset, m.delivery_count) for m in rest] == [(o, 1) for o in range(3, 10)]

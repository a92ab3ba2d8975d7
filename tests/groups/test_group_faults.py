"""Consumer groups when things go wrong: cancelled and lost polls, late acks, members that die
mid-poll, dead letters interrupted, __offsets failing, topics deleted under a group.

Each test here is the regression test of a defect found in review (see docs/changelog.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing

import logbroker
from logbroker.broker.broker import Broker, BrokerOptions
from logbroker.broker.options import GroupSettings
from logbroker.engine.engine import Engine
from logbroker.errors import InvalidTopicError, StorageError
from logbroker.groups.coordinator import GroupCoordinator
from logbroker.protocol.messages import (
    CommitOffset,
    GroupPoll,
    GroupPollResponse,
    JoinGroup,
    JoinGroupResponse,
    Nack,
)
from logbroker.records import encode_batch
from logbroker.testing import run_broker

Clock = trio.abc.Clock
NOW_MS = int(time.time() * 1000)


async def test_a_cancelled_poll_loses_no_records(autojump_clock: Clock) -> None:
    # The broker answers a poll the client gave up on: those records must come back, or an ack
    # of a later record would commit past records the application never saw.
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        async with client.group_consumer("g", "t", max_wait_ms=10_000) as consumer:
            with trio.move_on_after(1):
                await consumer.poll()  # waits in the broker for records
            await client.produce("t", [b"%d" % i for i in range(5)])
            # All tasks blocked: the abandoned poll took them and its response was dropped.
            await trio.testing.wait_all_tasks_blocked()
            await client.produce("t", [b"5"])
            seen: list[int] = []
            while len(seen) < 6:
                for message in await consumer.poll():
                    seen.append(message.offset)
                    await message.ack()
            assert seen == list(range(6))


async def test_a_poll_retried_at_once_ends_the_one_it_replaces(autojump_clock: Clock) -> None:
    # The abandoned poll still waits in the broker when the next one comes: it must not take
    # the records the next one waits for.
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        async with client.group_consumer("g", "t", max_wait_ms=10_000) as consumer:
            with trio.move_on_after(1):
                await consumer.poll()

            async def produce() -> None:
                # All tasks blocked: the retried poll is in the broker, the one it replaces ended.
                await trio.testing.wait_all_tasks_blocked()
                await client.produce("t", [b"%d" % i for i in range(5)])
                await trio.testing.wait_all_tasks_blocked()  # delivered and acked; polling again
                await client.produce("t", [b"5"])

            seen: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                while len(seen) < 6:
                    for message in await consumer.poll():
                        seen.append(message.offset)
                        await message.ack()
            assert seen == list(range(6))


async def test_a_member_that_dies_after_polling_is_expired(autojump_clock: Clock) -> None:
    # The group timer last looked while both members were polling; when the doomed member's last
    # poll ends, its session must count again.
    async with (
        run_broker(group_initial_delay=0, default_session_timeout=2) as broker,
        await logbroker.connect(broker.address) as admin,
    ):
        await admin.create_topic("t", partitions=2)
        doomed = await logbroker.connect(broker.address)
        joined, _ = await doomed.request(JoinGroup("g", ["t"], client_id="doomed"))
        assert isinstance(joined, JoinGroupResponse)
        got = trio.Event()
        async with admin.group_consumer("g", "t", max_wait_ms=300) as live, trio.open_nursery() as nursery:

            async def consume() -> None:
                while not await live.poll():
                    pass
                got.set()

            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()  # the live member joined and polls
            assert live.assignment == [("t", 1)]  # the doomed member kept partition 0
            async with trio.open_nursery() as polls:
                polls.start_soon(doomed.request, GroupPoll("g", joined.member_id, max_wait_ms=1000))
                await trio.testing.wait_all_tasks_blocked()  # both members' polls wait in the broker
                async with admin.group_consumer("other", "t"):  # the timer looks now
                    pass
            # The doomed member's poll has ended; it falls silent.
            await admin.produce("t", [b"x"], partition=0)
            with trio.move_on_after(6):
                await got.wait()  # the dead member's partition moved to the live one
            nursery.cancel_scope.cancel()
        await doomed.aclose()
        assert got.is_set()


async def test_an_ack_after_the_ack_timeout_commits(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"slow-0", b"slow-1"])
        async with client.group_consumer("g", "t", ack_timeout=0.2) as consumer:
            [first, second] = await consumer.poll()
            # Time passing is the point: processing outlasts the 0.2 s ack timeout, which takes
            # the records back.
            await trio.sleep(0.5)
            await first.ack()  # late, but it did process it: no error
            await second.ack()
            assert (await client.describe_group("g")).partitions[0].committed == 2


async def test_a_late_nack_is_no_error(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"a", b"b"])
        async with client.group_consumer("g", "t", ack_timeout=0.2) as consumer:
            [first, _] = await consumer.poll()
            await trio.sleep(0.5)  # time passing is the point: the 0.2 s ack timeout takes them back
            await first.nack()  # the ack timeout already took it back
            again = await consumer.poll()
            assert [(m.offset, m.delivery_count) for m in again] == [(0, 2), (1, 2)]


async def test_a_commit_wakes_a_poll_waiting_to_dead_letter(autojump_clock: Clock) -> None:
    async with (
        run_broker(group_initial_delay=0, default_max_deliveries=1, default_session_timeout=60) as broker,
        await logbroker.connect(broker.address) as client,
        await logbroker.connect(broker.address) as poller,
    ):
        await client.create_topic("t")
        await client.produce("t", [b"ok"])
        await client.produce("t", [b"poison"])
        joined, _ = await client.request(JoinGroup("g", ["t"], client_id="A"))
        assert isinstance(joined, JoinGroupResponse)
        member, generation = joined.member_id, joined.generation
        await client.request(GroupPoll("g", member, max_wait_ms=1000, max_bytes=1))  # offset 0
        await client.request(GroupPoll("g", member, max_wait_ms=1000, max_bytes=1))  # offset 1
        await client.request(Nack("g", member, generation, "t", 0, 1, 0))  # 1 failed: no deliveries left
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poller.request, GroupPoll("g", member, max_wait_ms=10_000))
            # All tasks blocked, no time passed: the poll waits in the broker, as offset 1 goes to
            # the DLQ only once 0 is done.
            await trio.testing.wait_all_tasks_blocked()
            await client.request(CommitOffset("g", member, generation, "t", 0, 1))
            await trio.testing.wait_all_tasks_blocked()  # woken by the commit, long before its 10 s
            assert (await client.describe_topic("dlq.g.t")).partitions[0].high_watermark == 1
            assert (await client.describe_group("g")).partitions[0].committed == 2
            nursery.cancel_scope.cancel()


async def test_a_poll_that_dead_letters_keeps_what_it_delivered(autojump_clock: Clock) -> None:
    async with (
        run_broker(group_initial_delay=0, default_max_deliveries=1) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t", partitions=2)
        await client.produce("t", [b"poison"], partition=0)
        async with client.group_consumer("g", "t") as consumer:
            [poison] = await consumer.poll()
            await poison.nack()  # its one delivery is used up: the next poll dead-letters it
            await client.produce("t", [b"a", b"b"], partition=1)
            await client.produce("t", [b"after"], partition=0)
            got: list[bytes | None] = []
            with trio.move_on_after(5):
                while len(got) < 3:
                    for message in await consumer.poll():
                        got.append(message.value)
                        await message.ack()
        assert sorted(got) == [b"a", b"after", b"b"]  # nothing delivered beside the DLQ copy is lost
        assert (await client.describe_topic("dlq.g.t")).partitions[0].high_watermark == 1


async def test_a_poll_cancelled_while_its_dead_letter_syncs_copies_once(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0, default_max_deliveries=1) as broker:
        admin = await logbroker.connect(broker.address)
        await admin.create_topic("t")
        for value in (b"poison", b"ok"):
            await admin.produce("t", [value])
        flusher = broker.engine.core.flusher
        durable = flusher.wait_durable

        async def slow_disk(pending):  # type: ignore[no-untyped-def]
            await trio.sleep(1)  # time passing is the point: a slow fsync, outlasting the poll
            await durable(pending)

        async with admin.group_consumer("g", "t") as consumer:
            [poison, _] = await consumer.poll()
            await poison.nack()
            flusher.wait_durable = slow_disk  # type: ignore[method-assign]
            with trio.move_on_after(0.2):  # cancelled (the member gives up) while the copy syncs
                await consumer.poll()
            flusher.wait_durable = durable  # type: ignore[method-assign]
            got = []
            with trio.move_on_after(3):
                while not got:
                    got = [m.value for m in await consumer.poll()]
            assert got == [b"ok"]
        assert (await admin.describe_topic("dlq.g.t")).partitions[0].high_watermark == 1
        await admin.aclose()


async def test_the_group_timer_survives_a_failing_offsets_log(autojump_clock: Clock) -> None:
    async with (
        run_broker(group_initial_delay=0.2) as broker,
        await logbroker.connect(broker.address) as client,
    ):
        await client.create_topic("t")
        joined, _ = await client.request(JoinGroup("g", ["t"], client_id="A"))
        assert isinstance(joined, JoinGroupResponse)
        log = broker.engine.coordinator.store.log
        append = log.append
        failed = trio.Event()

        def disk_full(*args, **kwargs):  # type: ignore[no-untyped-def]
            failed.set()
            raise StorageError("__offsets-0: write failed: No space left on device")

        log.append = disk_full  # type: ignore[method-assign]
        with trio.fail_after(5):
            await failed.wait()  # the first assignment, due after 0.2 s, writes start offsets: it fails
        log.append = append  # type: ignore[method-assign]
        assert [t.name for t in await client.list_topics()] == ["t"]  # still serving
        await client.produce("t", [b"x"])
        polled, _ = await client.request(GroupPoll("g", joined.member_id, max_wait_ms=100))
        assert isinstance(polled, GroupPollResponse)
        assert [(p.start, p.end) for p in polled.partitions] == [(0, 1)]  # the group works


def test_the_group_timer_does_not_spin_on_a_deadline_it_reached() -> None:
    # A deadline of 1001 ms reads as 1000.999... ms when slept until: it must count as reached.
    broker = Broker.in_memory(
        BrokerOptions(group_defaults=GroupSettings(session_timeout_ms=1000), group_initial_delay_ms=0),
        now_ms=NOW_MS,
    )
    broker.create_topic("t", 1, now_ms=NOW_MS)
    engine = Engine(broker)
    coordinator = engine.coordinator
    calls = 0
    expire = coordinator.expire

    def counting(now: int, now_ms: int) -> set[str]:
        nonlocal calls
        calls += 1
        if calls > 1000:
            raise AssertionError("the group timer spins")
        return expire(now, now_ms)

    coordinator.expire = counting  # type: ignore[method-assign]

    async def main() -> None:
        coordinator.membership.join("g", None, "A", ["t"], now=0, now_ms=NOW_MS)  # expires at 1001 ms
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.groups.run_timer)
            await trio.sleep(5)  # time passing is the point: the timer reaches the 1001 ms deadline
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert coordinator.groups["g"].members == {}
    assert calls < 10


async def test_a_recreated_topic_is_assigned_again(autojump_clock: Clock) -> None:
    async with run_broker(group_initial_delay=0) as broker, await logbroker.connect(broker.address) as client:
        await client.create_topic("t")
        await client.produce("t", [b"before"])
        async with client.group_consumer("g", "t") as consumer:
            [before] = await consumer.poll()
            await before.ack()
            await client.delete_topic("t")
            await client.create_topic("t")
            await client.produce("t", [b"after"])
            got: list[bytes | None] = []
            with trio.move_on_after(5):
                while not got:
                    got = [m.value for m in await consumer.poll()]
            assert got == [b"after"]
            assert consumer.assignment == [("t", 0)]


async def test_the_offsets_topic_cannot_be_deleted(autojump_clock: Clock) -> None:
    async with run_broker() as broker, await logbroker.connect(broker.address) as client:
        with pytest.raises(InvalidTopicError, match="internal"):
            await client.delete_topic("__offsets")
        await client.create_topic("t")
        async with client.group_consumer("g", "t") as consumer:
            assert await consumer.poll() == []


# -- the coordinator alone --------------------------------------------------------------------


def _open(data_dir: Path | None = None, **settings: int) -> tuple[Broker, GroupCoordinator]:
    options = BrokerOptions(group_defaults=GroupSettings(**settings), group_initial_delay_ms=0)
    if data_dir is None:
        broker = Broker.in_memory(options, now_ms=NOW_MS)
    else:
        broker = Broker.open(str(data_dir), options, now_ms=NOW_MS)
    return broker, GroupCoordinator(broker, now_ms=NOW_MS)


@pytest.mark.parametrize("poison", [0, 5])
def test_a_record_is_dead_lettered_once_while_its_copy_syncs(poison: int) -> None:
    broker, groups = _open(ack_timeout_ms=1000, max_deliveries=2)
    broker.create_topic("t", 1, now_ms=NOW_MS)
    for i in range(poison + 3):
        broker.produce("t", 0, encode_batch([b"%d" % i]), now_ms=NOW_MS)
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    if poison:
        groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS)
        groups.delivery.commit(
            "g", member, groups.groups["g"].generation, "t", 0, poison, now=0, now_ms=NOW_MS
        )
    now = 0
    for _ in range(2):  # both deliveries time out
        now += 10
        groups.delivery.poll("g", member, 1, now=now, now_ms=NOW_MS)
        now += 2000
        groups.expire(now, NOW_MS)
    first = groups.delivery.poll("g", member, 1 << 20, now=now, now_ms=NOW_MS)
    second = groups.delivery.poll("g", member, 1 << 20, now=now, now_ms=NOW_MS)  # before the copy is durable
    assert [d.offset for d in first.dead_letters] == [poison]
    assert second.dead_letters == [] and second.delivered == []
    groups.dead_letters.finish(first.dead_letters[0], now_ms=NOW_MS)
    assert broker.high_watermark(broker.log("dlq.g.t", 0)) == 1


def test_a_restart_between_the_dead_letter_copy_and_its_commit_copies_once(tmp_path: Path) -> None:
    broker, groups = _open(tmp_path, ack_timeout_ms=1000, max_deliveries=1)
    broker.create_topic("t", 1, now_ms=NOW_MS)
    broker.produce("t", 0, encode_batch([b"poison", b"next"]), now_ms=NOW_MS)
    broker.log("t", 0).flush()  # visible to groups (fsync=always)
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS)
    groups.delivery.commit("g", member, groups.groups["g"].generation, "t", 0, 0, now=0, now_ms=NOW_MS)
    groups.expire(5000, NOW_MS)
    [letter] = groups.delivery.poll("g", member, 1 << 20, now=5000, now_ms=NOW_MS).dead_letters
    assert letter.offset == 0
    for _, _, log in broker.logs():
        log.flush()
    broker.close()  # the copy is durable; the broker stops before it commits past the record

    broker, groups = _open(tmp_path, ack_timeout_ms=1000, max_deliveries=1)
    assert groups.groups["g"].partitions[("t", 0)].committed == 1
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    [delivered] = groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS).delivered
    assert (delivered.start, delivered.end) == (1, 2)
    assert broker.high_watermark(broker.log("dlq.g.t", 0)) == 1
    broker.close()


def test_a_restart_before_the_dead_letter_copy_delivers_the_record_again(tmp_path: Path) -> None:
    broker, groups = _open(tmp_path, ack_timeout_ms=1000, max_deliveries=1)
    broker.create_topic("t", 1, now_ms=NOW_MS)
    broker.produce("t", 0, encode_batch([b"poison"]), now_ms=NOW_MS)
    broker.log("t", 0).flush()
    broker.create_topic("dlq.g.t", 1, now_ms=NOW_MS)
    # In the dead-letter topic after the marker: a record that is not the copy (another offset).
    headers = [("dlq.topic", b"t"), ("dlq.partition", b"0"), ("dlq.offset", b"7"), ("dlq.group", b"g")]
    broker.produce("dlq.g.t", 0, encode_batch([b"other"], headers=[headers]), now_ms=NOW_MS)
    marker = {"offset": 0, "partition": 0, "from": 0}
    groups.store.write(
        [(("offset", "g", "t", "0"), {"offset": 0, "dead_letter": marker})], NOW_MS
    )  # the marker is written, then the broker stops before the copy
    for _, _, log in broker.logs():
        log.flush()
    broker.close()

    broker, groups = _open(tmp_path, ack_timeout_ms=1000, max_deliveries=1)
    assert groups.groups["g"].partitions[("t", 0)].committed == 0
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    [delivered] = groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS).delivered
    assert (delivered.start, delivered.end) == (0, 1)  # delivered again: not lost
    broker.close()


def test_a_release_outside_what_is_in_flight_takes_back_only_what_is() -> None:
    broker, groups = _open(ack_timeout_ms=1000)
    broker.create_topic("t", 1, now_ms=NOW_MS)
    broker.produce("t", 0, encode_batch([b"%d" % i for i in range(10)]), now_ms=NOW_MS)
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    generation = groups.groups["g"].generation
    groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS)
    groups.delivery.commit("g", member, generation, "t", 0, 4, now=0, now_ms=NOW_MS)
    state = groups.groups["g"].partitions[("t", 0)]
    groups.delivery.nack("g", member, generation, "t", 0, 20, 0, now=0, release=True)  # past the cursor
    assert (state.committed, state.cursor) == (4, 10)
    groups.delivery.nack("g", member, generation, "t", 0, 0, 0, now=0, release=True)  # below the commit
    assert (state.committed, state.cursor) == (4, 4)
    [again] = groups.delivery.poll("g", member, 1 << 20, now=1, now_ms=NOW_MS).delivered
    assert again.counts == [(4, 10, 1)]  # released: not counted


def test_a_commit_that_cannot_be_written_changes_nothing() -> None:
    broker, groups = _open()
    broker.create_topic("t", 1, now_ms=NOW_MS)
    broker.produce("t", 0, encode_batch([b"a", b"b"]), now_ms=NOW_MS)
    member, _, _ = groups.membership.join("g", None, "c", ["t"], now=0, now_ms=NOW_MS)
    groups.delivery.poll("g", member, 1 << 20, now=0, now_ms=NOW_MS)
    log = groups.store.log

    def disk_full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StorageError("__offsets-0: write failed: No space left on device")

    log.append = disk_full  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        groups.delivery.commit("g", member, groups.groups["g"].generation, "t", 0, 2, now=0, now_ms=NOW_MS)
    assert groups.groups["g"].partitions[("t", 0)].committed == 0

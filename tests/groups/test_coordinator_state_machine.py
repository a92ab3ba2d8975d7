"""A Hypothesis state machine of the group coordinator (no server: the synchronous core).

Members join and leave, poll, commit, nack; time advances (sessions and ack timeouts expire);
the broker restarts. After every step: committed offsets never went backwards, no partition has
two owners, no record was delivered more often than the group allows. At the end a fresh member
drains the group: every record is then committed or dead-lettered.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from logbroker.broker.broker import Broker
from logbroker.broker.options import BrokerOptions, FsyncPolicy, GroupSettings
from logbroker.errors import IllegalGenerationError, InvalidRequestError, UnknownMemberIdError
from logbroker.groups.coordinator import GroupCoordinator
from logbroker.groups.delivery import PollResult
from logbroker.records import encode_batch, iter_records
from logbroker.storage.fault_fs import FaultFileSystem

WALL = 1_767_225_600_000
PARTITIONS = 3
OPTIONS = BrokerOptions(
    fsync=FsyncPolicy.parse("never"),
    group_defaults=GroupSettings(ack_timeout_ms=1000, max_deliveries=3, session_timeout_ms=2000),
    group_initial_delay_ms=0,
)


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = FaultFileSystem()
        self.now = 0
        self.broker = Broker.open("/data", OPTIONS, fs=self.fs, now_ms=WALL)
        self.groups = GroupCoordinator(self.broker, now_ms=WALL)
        self.broker.create_topic("t", PARTITIONS, now_ms=WALL)
        for p in range(PARTITIONS):
            for i in range(4):
                self.broker.produce(
                    "t", p, encode_batch([b"%d-%d" % (p, i)] * 2, timestamp=WALL), now_ms=WALL
                )
        self.members: dict[str, str] = {}  # name -> member id
        self.delivered: dict[str, dict[int, int]] = {}  # member id -> partition -> end delivered
        self.committed = dict.fromkeys(range(PARTITIONS), 0)
        self.dead = 0

    def _poll_result(self, member_id: str, result: PollResult) -> None:
        for letter in result.dead_letters:
            self.groups.dead_letters.finish(letter, now_ms=WALL)
            self.dead += 1
        group = self.groups.groups["g"]
        for d in result.delivered:
            assert group.partitions[(d.topic, d.partition)].owner == member_id
            assert all(count <= group.settings.max_deliveries for _, _, count in d.counts)
            assert d.start >= self.committed[d.partition]
            self.delivered.setdefault(member_id, {})[d.partition] = d.end

    @rule(name=st.sampled_from("abc"))
    def join(self, name: str) -> None:
        if name not in self.members:
            member_id, _, _ = self.groups.membership.join("g", None, name, ["t"], now=self.now, now_ms=WALL)
            self.members[name] = member_id

    @rule(name=st.sampled_from("abc"))
    def leave(self, name: str) -> None:
        member_id = self.members.pop(name, None)
        if member_id is not None:
            try:
                self.groups.membership.leave("g", member_id, now=self.now, now_ms=WALL)
            except UnknownMemberIdError:
                pass  # its session had already expired

    @rule(name=st.sampled_from("abc"), max_bytes=st.sampled_from([1, 200, 1 << 20]))
    def poll(self, name: str, max_bytes: int) -> None:
        member_id = self.members.get(name)
        if member_id is None:
            return
        try:
            result = self.groups.delivery.poll("g", member_id, max_bytes, now=self.now, now_ms=WALL)
        except UnknownMemberIdError:
            del self.members[name]
            return
        self._poll_result(member_id, result)

    @rule(name=st.sampled_from("abc"), partition=st.integers(0, PARTITIONS - 1), back=st.integers(0, 3))
    def commit(self, name: str, partition: int, back: int) -> None:
        member_id = self.members.get(name)
        end = self.delivered.get(member_id or "", {}).get(partition)
        if member_id is None or end is None:
            return
        group = self.groups.groups["g"]
        owner = group.partitions[("t", partition)].owner
        try:
            committed, _ = self.groups.delivery.commit(
                "g",
                member_id,
                group.generation,
                "t",
                partition,
                max(end - back, 0),
                now=self.now,
                now_ms=WALL,
            )
        except UnknownMemberIdError:
            del self.members[name]
            return
        except IllegalGenerationError:
            assert owner != member_id  # only a member that lost the partition is refused
            return
        except InvalidRequestError:
            return  # not delivered (it was taken back by a rewind)
        assert owner == member_id
        self.committed[partition] = max(self.committed[partition], committed)

    @rule(
        name=st.sampled_from("abc"), partition=st.integers(0, PARTITIONS - 1), delay=st.sampled_from([0, 500])
    )
    def nack(self, name: str, partition: int, delay: int) -> None:
        member_id = self.members.get(name)
        if member_id is None:
            return
        state = self.groups.groups["g"].partitions.get(("t", partition))
        if state is None or state.cursor <= state.committed:
            return
        try:
            self.groups.delivery.nack(
                "g",
                member_id,
                self.groups.groups["g"].generation,
                "t",
                partition,
                state.committed,
                delay,
                now=self.now,
            )
        except (UnknownMemberIdError, IllegalGenerationError):
            pass

    @rule(name=st.sampled_from("abc"), partition=st.integers(0, PARTITIONS - 1), back=st.integers(0, 3))
    def lose_a_poll(self, name: str, partition: int, back: int) -> None:
        """The answer to a poll was lost: the member's next poll says what it did see."""
        member_id = self.members.get(name)
        if member_id is None:
            return
        delivered = self.delivered.setdefault(member_id, {})
        if partition in delivered:
            delivered[partition] = max(delivered[partition] - back, 0)  # those answers were lost
        seen = {("t", p): end for p, end in delivered.items()}
        try:
            self.groups.delivery.take_back_unseen("g", member_id, seen, now=self.now)
        except UnknownMemberIdError:
            del self.members[name]

    @rule(ms=st.sampled_from([100, 999, 1001, 2500]))
    def advance(self, ms: int) -> None:
        self.now += ms
        self.groups.expire(self.now, WALL)
        for name, member_id in list(self.members.items()):
            if member_id not in self.groups.groups["g"].members:
                del self.members[name]

    @rule(partition=st.integers(0, PARTITIONS - 1))
    def produce(self, partition: int) -> None:
        self.broker.produce("t", partition, encode_batch([b"more"], timestamp=WALL), now_ms=WALL)

    @rule()
    def restart(self) -> None:
        self.broker.close()
        self.broker = Broker.open("/data", OPTIONS, fs=self.fs, now_ms=WALL)
        self.groups = GroupCoordinator(self.broker, now_ms=WALL)
        self.members.clear()
        self.delivered.clear()

    @invariant()
    def committed_never_moves_back(self) -> None:
        group = self.groups.groups.get("g")
        if group is None:
            return
        for (_, p), state in group.partitions.items():
            assert state.committed >= self.committed[p], (p, state.committed, self.committed[p])
            self.committed[p] = state.committed

    @invariant()
    def one_owner_per_partition(self) -> None:
        group = self.groups.groups.get("g")
        if group is None:
            return
        seen: set[tuple[str, int]] = set()
        for member_id in group.members:
            mine = set(group.assignment(member_id))
            assert not mine & seen
            seen |= mine

    def teardown(self) -> None:
        # A fresh, diligent member drains the group: everything ends committed or dead-lettered.
        member_id, _, _ = self.groups.membership.join("g", None, "drain", ["t"], now=self.now, now_ms=WALL)
        for name in list(self.members):
            self.leave(name)
        for _ in range(200):
            self.now += 1100  # past the ack timeout, within the drain member's session
            self.groups.expire(self.now, WALL)
            try:
                result = self.groups.delivery.poll("g", member_id, 1 << 20, now=self.now, now_ms=WALL)
            except UnknownMemberIdError:
                member_id, _, _ = self.groups.membership.join(
                    "g", None, "drain", ["t"], now=self.now, now_ms=WALL
                )
                continue
            self._poll_result(member_id, result)
            group = self.groups.groups["g"]
            for d in result.delivered:
                self.groups.delivery.commit(
                    "g", member_id, group.generation, d.topic, d.partition, d.end, now=self.now, now_ms=WALL
                )
            ends = [self.broker.log("t", p).next_offset for p in range(PARTITIONS)]
            if [group.partitions[("t", p)].committed for p in range(PARTITIONS)] == ends:
                break
        else:
            raise AssertionError("the group never drained")
        letters = 0
        if self.broker.has_topic("dlq.g.t"):
            log = self.broker.log("dlq.g.t", 0)
            letters = len(list(iter_records(log.read(0, 1 << 30))))
        assert letters == self.dead
        self.broker.close()


TestGroupCoordinator = GroupMachine.TestCase
TestGroupCoordinator.settings = settings(settings(), stateful_step_count=40)

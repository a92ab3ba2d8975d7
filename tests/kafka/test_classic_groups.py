"""Kafka's classic group state machine (`ClassicGroups`), driven with explicit times in ms; and
its commit rules for a group that does not exist, at the wire."""

from __future__ import annotations

import struct

import pytest

from logbroker.broker.broker import Broker
from logbroker.broker.options import BrokerOptions
from logbroker.errors import (
    IllegalGenerationError,
    InconsistentGroupProtocolError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logbroker.groups.classic import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    ClassicGroup,
    ClassicGroups,
    JoinRequest,
    assigned_partitions,
    subscribed_topics,
)
from logbroker.groups.offsets_store import OffsetsStore
from logbroker.kafka.apis import LIST_GROUPS, OFFSET_COMMIT
from tests.kafka.wire import Wire

DELAY = 100  # the initial rebalance delay
SESSION = 1000
REBALANCE = 5000
RANGE = [("range", b"r"), ("roundrobin", b"rr")]
ILLEGAL_GENERATION = 22  # Kafka's code


@pytest.fixture
def groups() -> ClassicGroups:
    broker = Broker.in_memory(BrokerOptions(classic_initial_delay_ms=DELAY))
    return ClassicGroups(broker, OffsetsStore(broker, now_ms=0))


def request(
    group: ClassicGroup, member_id: str, protocol_type: str, protocols: list[tuple[str, bytes]]
) -> JoinRequest:
    return JoinRequest(group.name, member_id, "c", "h", SESSION, REBALANCE, protocol_type, protocols)


def join(
    groups: ClassicGroups, group: ClassicGroup, member_id: str = "", protocols=RANGE, *, now: int
) -> str:
    member, _ = groups.join(group, request(group, member_id, "consumer", protocols), now=now)
    return member.member_id


def stable_pair(groups: ClassicGroups) -> tuple[ClassicGroup, str, str]:
    """A group of two members in generation 1 with their assignments sent."""
    group = groups.load("g")
    leader = join(groups, group, now=0)
    follower = join(groups, group, now=10)
    groups.expire(now=DELAY)
    assert group.state == COMPLETING
    assert groups.sync(group, follower, 1, {}, now=DELAY) is None  # waits for the leader
    groups.sync(group, leader, 1, {leader: b"a", follower: b"b"}, now=DELAY)
    return group, leader, follower


@pytest.mark.parametrize(("protocol_type", "protocols"), [("consumer", []), ("", RANGE)])
def test_a_member_offering_no_protocol_is_refused_and_the_timer_goes_on(
    groups: ClassicGroups, protocol_type: str, protocols: list[tuple[str, bytes]]
) -> None:
    # Regression: an empty protocol list joined, and choosing the group's protocol at the end of
    # the initial delay raised in the group timer, which stopped the whole server.
    group = groups.load("g")
    with pytest.raises(InconsistentGroupProtocolError):
        groups.join(group, request(group, "", protocol_type, protocols), now=0)
    assert group.members == {}
    assert groups.expire(now=DELAY + REBALANCE) == set()


def test_members_that_start_together_share_one_generation(groups: ClassicGroups) -> None:
    group = groups.load("g")
    leader = join(groups, group, now=0)
    follower = join(groups, group, protocols=[("roundrobin", b"x"), ("range", b"y")], now=50)
    assert group.state == PREPARING
    assert groups.expire(now=DELAY - 1) == set()  # the initial delay is not over
    assert groups.expire(now=DELAY) == {"g"}
    assert (group.state, group.generation, group.leader) == (COMPLETING, 1, leader)
    answers = {m.member_id: m.join_response for m in group.members.values()}
    assert answers[leader] is not None and answers[follower] is not None
    assert answers[leader].protocol_name in {"range", "roundrobin"}  # a tie: both are supported by all
    assert sorted(answers[leader].members) == sorted([(leader, b"r"), (follower, b"y")])
    assert answers[follower].members == []  # only the leader learns the members


def test_a_member_with_no_protocol_in_common_is_refused(groups: ClassicGroups) -> None:
    group = groups.load("g")
    join(groups, group, now=0)
    with pytest.raises(InconsistentGroupProtocolError):
        join(groups, group, protocols=[("sticky", b"")], now=1)
    with pytest.raises(InconsistentGroupProtocolError):
        groups.join(group, request(group, "", "connect", RANGE), now=1)


def test_followers_get_their_assignment_once_the_leader_sends_it(groups: ClassicGroups) -> None:
    group, leader, follower = stable_pair(groups)
    assert group.state == STABLE
    assert groups.sync(group, follower, 1, {}, now=DELAY + 1) == b"b"
    assert dict(groups.assignments(group)) == {leader: b"a", follower: b"b"}


def test_fencing_errors(groups: ClassicGroups) -> None:
    group, leader, follower = stable_pair(groups)
    with pytest.raises(IllegalGenerationError):
        groups.heartbeat(group, follower, 0, now=DELAY)
    with pytest.raises(UnknownMemberIdError):
        groups.heartbeat(group, "stranger", 1, now=DELAY)
    with pytest.raises(UnknownMemberIdError):
        join(groups, group, member_id="stranger", now=DELAY)
    join(groups, group, member_id=leader, now=DELAY + 1)  # the leader rejoins: a rebalance
    assert group.state == PREPARING
    with pytest.raises(RebalanceInProgressError):
        groups.heartbeat(group, follower, 1, now=DELAY + 1)
    with pytest.raises(RebalanceInProgressError):
        groups.sync(group, follower, 1, {}, now=DELAY + 1)


def test_a_silent_member_is_removed_after_its_session_timeout(groups: ClassicGroups) -> None:
    group, leader, _ = stable_pair(groups)
    groups.heartbeat(group, leader, 1, now=DELAY + SESSION)
    assert groups.expire(now=DELAY + SESSION) == set()
    assert groups.expire(now=DELAY + SESSION + 1) == {"g"}  # the follower was silent too long
    assert list(group.members) == [leader]
    assert group.state == PREPARING
    join(groups, group, member_id=leader, now=DELAY + SESSION + 2)  # everyone left has rejoined
    assert (group.state, group.generation) == (COMPLETING, 2)


def test_a_waiting_request_keeps_its_member_alive(groups: ClassicGroups) -> None:
    group, leader, follower = stable_pair(groups)
    group.members[follower].waiting = 1
    groups.heartbeat(group, leader, 1, now=DELAY + 2 * SESSION)
    assert groups.expire(now=DELAY + 2 * SESSION) == set()
    assert set(group.members) == {leader, follower}


def test_members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped(groups: ClassicGroups) -> None:
    group, leader, follower = stable_pair(groups)
    now = DELAY + 10
    join(groups, group, member_id=leader, now=now)
    group.members[leader].waiting = 1  # its JoinGroup waits in the broker
    for t in range(now + 500, now + REBALANCE, 500):  # the follower only heartbeats
        with pytest.raises(RebalanceInProgressError):
            groups.heartbeat(group, follower, 1, now=t)
        assert groups.expire(now=t) == set()
        assert group.state == PREPARING
    groups.expire(now=now + REBALANCE)
    assert list(group.members) == [leader]
    assert (group.state, group.generation) == (COMPLETING, 2)


def test_commit_rules(groups: ClassicGroups) -> None:
    group = groups.load("g")
    groups.check_commit(group, "", -1, now=0)  # a simple consumer may commit to an empty group
    leader = join(groups, group, now=0)
    follower = join(groups, group, now=1)
    with pytest.raises(UnknownMemberIdError):
        groups.check_commit(group, "", -1, now=2)  # not once it has members
    groups.expire(now=DELAY)
    with pytest.raises(RebalanceInProgressError):
        groups.check_commit(group, follower, 1, now=DELAY)  # the leader has not assigned yet
    groups.sync(group, leader, 1, {}, now=DELAY)
    groups.check_commit(group, follower, 1, now=DELAY)
    with pytest.raises(IllegalGenerationError):
        groups.check_commit(group, follower, 0, now=DELAY)


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


def test_only_a_simple_commit_is_accepted_for_a_group_that_does_not_exist(wire: Wire) -> None:
    # A commit with a generation for a group that does not exist is from a member of a group
    # that is gone: ILLEGAL_GENERATION, and no group is created.
    answer = wire.call(OFFSET_COMMIT, 7, commit_body("ghost", 3, "member-1"))
    assert answer["topics"][0]["partitions"][0]["error_code"] == ILLEGAL_GENERATION
    assert wire.call(LIST_GROUPS, 2, {})["groups"] == []
    # Generation -1 is a commit of a group that only stores offsets here: accepted while empty,
    # whatever member id it names.
    answer = wire.call(OFFSET_COMMIT, 7, commit_body("simple", -1, "someone"))
    assert answer["topics"][0]["partitions"][0]["error_code"] == 0


def test_the_last_member_leaving_empties_the_group(groups: ClassicGroups) -> None:
    group, leader, follower = stable_pair(groups)
    groups.leave(group, follower, now=DELAY + 1)
    assert group.state == PREPARING
    groups.leave(group, leader, now=DELAY + 2)
    assert (group.state, group.leader, group.protocol_name) == (EMPTY, None, None)
    with pytest.raises(UnknownMemberIdError):
        groups.leave(group, leader, now=DELAY + 3)


def test_a_member_payload_is_read_for_its_leading_field_only() -> None:
    """Regression (review of the reshape): the broker shows who owns what from the first field of
    the consumer protocol's payloads, whatever follows it, as clients that leave out the rest
    (`user_data`, `owned_partitions`) still expect."""
    topics_only = struct.pack(">hi", 1, 2) + struct.pack(">h", 1) + b"a" + struct.pack(">h", 2) + b"bb"
    assert subscribed_topics(topics_only) == ["a", "bb"]
    partitions_only = struct.pack(">hi", 0, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">iii", 2, 0, 3)
    assert assigned_partitions(partitions_only) == [("t", 0), ("t", 3)]
    assert subscribed_topics(b"\x00") == [] and assigned_partitions(struct.pack(">hi", 0, 5)) == []

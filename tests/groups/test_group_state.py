"""The pure pieces of consumer groups: delivery counts, cursors, the assignment."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from logbroker.groups.cursor import DeliveryCounts, PartitionCursor
from logbroker.groups.membership import Member, assign


def test_delivery_counts() -> None:
    counts = DeliveryCounts()
    assert counts.deliver(0, 10) == [(0, 10, 1)]
    assert counts.deliver(5, 15) == [(5, 10, 2), (10, 15, 1)]
    assert [counts.count(o) for o in (0, 5, 12, 20)] == [1, 2, 1, 0]
    counts.void(7, 15)
    assert [counts.count(o) for o in (6, 7, 12)] == [2, 1, 0]
    assert counts.first_reaching(0, 15, 2) == 5
    assert counts.first_reaching(7, 15, 2) is None
    counts.drop_below(6)
    assert counts.count(5) == 0 and counts.count(6) == 2


def test_a_nack_counts_only_the_failed_record() -> None:
    cursor = PartitionCursor("t", 0, 0, 0)
    cursor.record_delivery(0, 10, now=0)
    cursor.commit(3)
    cursor.nack(3, resume_at=500)
    assert (cursor.committed, cursor.cursor, cursor.paused_until) == (3, 3, 500)
    assert not cursor.deliverable(100) or cursor.owner is None
    counts = cursor.record_delivery(3, 10, now=600)
    assert counts == [(3, 4, 2), (4, 10, 1)]


def test_ack_timeout_rewind_keeps_committed_and_counts() -> None:
    cursor = PartitionCursor("t", 0, 0, 0)
    cursor.record_delivery(0, 5, now=0)
    cursor.record_delivery(5, 8, now=100)
    cursor.commit(2)
    assert cursor.ack_deadline(1000) == 1000
    cursor.commit(6)
    assert cursor.ack_deadline(1000) == 1100
    cursor.rewind(cursor.committed)
    assert (cursor.cursor, list(cursor.in_flight)) == (6, [])
    assert cursor.record_delivery(6, 8, now=2000) == [(6, 8, 2)]
    cursor.commit(1)  # never backwards
    assert cursor.committed == 6


def members(*specs: tuple[str, tuple[str, ...]]) -> dict[str, Member]:
    return {name: Member(name, "c", topics, 0) for name, topics in specs}


def test_assignment_is_balanced_and_sticky() -> None:
    parts = [("t", p) for p in range(6)]
    one = assign(members(("a", ("t",))), parts, {})
    assert set(one.values()) == {"a"}
    two = assign(members(("a", ("t",)), ("b", ("t",))), parts, one)
    assert sorted(two.values()).count("a") == 3 and sorted(two.values()).count("b") == 3
    kept = [tp for tp in parts if two[tp] == "a"]
    assert all(one[tp] == "a" for tp in kept)  # a keeps what it had, up to its share
    back = assign(members(("b", ("t",))), parts, two)
    assert set(back.values()) == {"b"}
    assert all(back[tp] == "b" for tp in parts if two[tp] == "b")


def test_members_only_get_topics_they_subscribe_to() -> None:
    parts = [("t", 0), ("t", 1), ("u", 0)]
    result = assign(members(("a", ("t",)), ("b", ("u",))), parts, {})
    assert result == {("t", 0): "a", ("t", 1): "a", ("u", 0): "b"}
    assert assign(members(("a", ("t",))), parts, {})[("u", 0)] is None


@given(
    n_members=st.integers(1, 6),
    n_partitions=st.integers(0, 20),
    previous=st.lists(st.integers(0, 7), max_size=20),
)
# Found by Hypothesis: two members keeping two partitions each left the third with none.
@example(n_members=3, n_partitions=4, previous=[0, 0, 1, 1])
def test_assignment_properties(n_members: int, n_partitions: int, previous: list[int]) -> None:
    group = members(*[(f"m{i}", ("t",)) for i in range(n_members)])
    parts = [("t", p) for p in range(n_partitions)]
    current = {tp: f"m{previous[i]}" if i < len(previous) else None for i, tp in enumerate(parts)}
    result = assign(group, parts, current)
    assert set(result) == set(parts)
    loads = [list(result.values()).count(m) for m in group]
    assert max(loads) - min(loads) <= 1
    assert all(owner in group for owner in result.values())

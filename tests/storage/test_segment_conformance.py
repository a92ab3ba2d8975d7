"""The segment contract, run against both kinds (memory and file) by the `make_segment` fixture."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbroker.records import encode_batch, iter_records
from tests.helpers import batch, offsets
from tests.storage.conftest import SegmentFactory, append_batches


def test_an_empty_segment(make_segment: SegmentFactory) -> None:
    segment = make_segment(base_offset=100)
    assert (segment.base_offset, segment.next_offset, segment.size) == (100, 100, 0)
    assert segment.read(100, 1000) == (b"", 100)
    assert segment.max_timestamp == -1
    assert segment.offset_for_timestamp(0) is None


def test_append_then_read_everything(make_segment: SegmentFactory) -> None:
    segment = make_segment(base_offset=10)
    stamped = append_batches(segment, [batch(3), batch(1), batch(5)], now_ms=7)
    assert segment.next_offset == 19
    assert segment.size == sum(len(b) for b in stamped)
    assert segment.read(10, 1 << 20) == (b"".join(stamped), 19)
    assert segment.modified_ms == 7


def test_reads_start_with_the_batch_holding_the_offset(make_segment: SegmentFactory) -> None:
    segment = make_segment(index_interval_bytes=1)
    stamped = append_batches(segment, [batch(3), batch(3), batch(3)])
    assert segment.read(4, 1 << 20) == (stamped[1] + stamped[2], 9)
    assert segment.read(5, 1 << 20)[0] == stamped[1] + stamped[2]
    assert segment.read(6, 1 << 20)[0] == stamped[2]


def test_max_bytes_cuts_at_whole_batches(make_segment: SegmentFactory) -> None:
    segment = make_segment()
    stamped = append_batches(segment, [batch(2), batch(2), batch(2)])
    size = len(stamped[0])
    assert segment.read(0, 2 * size + size // 2) == (stamped[0] + stamped[1], 4)
    # The first batch is returned whole even when larger than max_bytes ...
    assert segment.read(0, 10) == (stamped[0], 2)
    # ... unless the caller asks for nothing over the limit.
    assert segment.read(0, 10, min_one=False) == (b"", 0)


def test_end_offset_bounds_a_read(make_segment: SegmentFactory) -> None:
    segment = make_segment()
    stamped = append_batches(segment, [batch(2), batch(2), batch(2)])
    assert segment.read(0, 1 << 20, end_offset=4) == (stamped[0] + stamped[1], 4)
    assert segment.read(0, 1 << 20, end_offset=3) == (stamped[0] + stamped[1], 4)
    assert segment.read(4, 1 << 20, end_offset=4) == (b"", 4)


def test_appends_must_follow_on(make_segment: SegmentFactory) -> None:
    segment = make_segment(base_offset=5)
    append_batches(segment, [batch(2)])
    from logbroker.storage.segment import BatchInfo

    with pytest.raises(ValueError, match="does not follow"):
        segment.append([batch(1)], [BatchInfo(9, 10, 0, len(batch(1)))], 0)


def test_truncate_to(make_segment: SegmentFactory) -> None:
    segment = make_segment(index_interval_bytes=1)
    stamped = append_batches(segment, [batch(2), batch(3), batch(4)])
    with pytest.raises(ValueError, match="inside"):
        segment.truncate_to(3)
    segment.truncate_to(5)
    assert (segment.next_offset, segment.size) == (5, len(stamped[0]) + len(stamped[1]))
    assert segment.read(0, 1 << 20) == (stamped[0] + stamped[1], 5)
    again = append_batches(segment, [batch(1)])
    assert segment.read(5, 1 << 20) == (again[0], 6)
    segment.truncate_to(0)
    assert (segment.next_offset, segment.size) == (0, 0)
    segment.truncate_to(100)  # past the end: nothing to do
    assert segment.next_offset == 0


def test_timestamps_and_lookup(make_segment: SegmentFactory) -> None:
    segment = make_segment(index_interval_bytes=1)
    append_batches(
        segment,
        [
            encode_batch([b"a", b"b"], timestamps=[1000, 1010]),
            encode_batch([b"c"], timestamps=[990]),
            encode_batch([b"d", b"e"], timestamps=[2000, 1500]),
        ],
    )
    assert segment.max_timestamp == 2000
    assert segment.offset_for_timestamp(0) == 0
    assert segment.offset_for_timestamp(1005) == 1
    assert segment.offset_for_timestamp(1011) == 3
    assert segment.offset_for_timestamp(1600) == 3
    assert segment.offset_for_timestamp(2000) == 3
    assert segment.offset_for_timestamp(2001) is None


@st.composite
def batch_plans(draw: st.DrawFn) -> list[list[int]]:
    """Batches as lists of record timestamps (non-monotonic on purpose)."""
    return draw(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=6), min_size=1, max_size=25))


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])  # a factory
@given(plan=batch_plans(), interval=st.sampled_from([1, 100, 400, 1 << 20]), data=st.data())
def test_reads_and_lookups_match_a_model(
    make_segment: SegmentFactory, plan: list[list[int]], interval: int, data: st.DataObject
) -> None:
    segment = make_segment(base_offset=1000, index_interval_bytes=interval)
    batches = [encode_batch([b"v%d" % t for t in ts], timestamps=ts) for ts in plan]
    stamped = append_batches(segment, batches)
    starts = []
    offset = 1000
    for ts in plan:
        starts.append(offset)
        offset += len(ts)
    model = [
        (o, t)
        for s, ts in zip(starts, plan, strict=True)
        for o, t in zip(range(s, s + len(ts)), ts, strict=True)
    ]
    for _ in range(5):
        at = data.draw(st.integers(1000, offset - 1))
        max_bytes = data.draw(st.integers(1, 2000))
        got, next_offset = segment.read(at, max_bytes)
        first = max(i for i, s in enumerate(starts) if s <= at)
        expected = [stamped[first]]
        for more in stamped[first + 1 :]:
            if sum(map(len, expected)) + len(more) > max_bytes:
                break
            expected.append(more)
        assert got == b"".join(expected)
        assert next_offset == offsets(got)[-1] + 1
        target = data.draw(st.integers(0, 52))
        want = next((o for o, t in model if t >= target), None)
        assert segment.offset_for_timestamp(target) == want
    assert [r.offset for r in iter_records(segment.read(1000, 1 << 30)[0])] == [o for o, _ in model]

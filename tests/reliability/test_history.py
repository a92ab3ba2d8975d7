"""The history checker finds each kind of violation, and passes a clean history."""

from __future__ import annotations

from tools.campaigns.history import FAILED, OK, History, check, committed_went_back


def clean() -> tuple[History, dict[int, list[tuple[int, bytes]]]]:
    """p0 acked a-0..a-2 at offsets 0-2 of partition 0; a-3 is unknown and was stored."""
    history = History()
    first = history.attempt("a", 0, [b"a-0", b"a-1"])
    first.outcome, first.offset = OK, 0
    second = history.attempt("a", 0, [b"a-2"])
    second.outcome, second.offset = OK, 2
    history.attempt("a", 0, [b"a-3"])  # unknown: the connection was lost
    for offset, payload in enumerate([b"a-0", b"a-1", b"a-2"]):
        history.read(0, offset, payload)
    return history, {0: [(0, b"a-0"), (1, b"a-1"), (2, b"a-2"), (3, b"a-3")]}


def test_a_clean_history_passes() -> None:
    history, log = clean()
    report = check(history, log)
    assert report.ok, report.summary()
    assert (report.attempted, report.acked, report.unknown, report.in_log) == (4, 3, 1, 4)


def test_an_acked_record_missing_from_the_log_is_lost() -> None:
    history, log = clean()
    del log[0][1:]
    report = check(history, {0: log[0]}, expect_consumed=False)
    assert report.lost == [b"a-1", b"a-2"]


def test_an_acked_record_elsewhere_is_misplaced_and_a_second_copy_is_a_duplicate() -> None:
    history, log = clean()
    log[0][3] = (3, b"a-1")
    report = check(history, log)
    assert report.duplicated == [b"a-1"]
    log[0][1:] = [(1, b"a-2"), (2, b"a-1")]
    report = check(history, log, expect_consumed=False)
    assert report.misplaced and report.reordered


def test_records_never_attempted_or_refused_are_phantoms() -> None:
    history, log = clean()
    refused = history.attempt("a", 0, [b"a-4"])
    refused.outcome = FAILED
    log[0].extend([(4, b"a-4"), (5, b"z-9")])
    assert len(check(history, log).phantom) == 2
    history, log = clean()
    history.read(0, 1, b"a-2")  # a read that the log does not have at that offset
    assert len(check(history, log).phantom) == 1


def test_offsets_must_be_contiguous_from_the_log_start() -> None:
    history, log = clean()
    assert check(history, log, log_start={0: 1}).gaps  # offset 0 where 1 was the start
    log[0][3] = (5, b"a-3")
    assert check(history, log).gaps == ["partition 0: offset 5 where 3 was next"]


def test_acked_records_the_consumer_never_read_are_reported() -> None:
    history, log = clean()
    history.reads.pop()
    assert check(history, log).unconsumed == [b"a-2"]
    assert check(history, log, expect_consumed=False).ok


def test_committed_offsets_going_back_are_reported() -> None:
    assert committed_went_back([{0: -1}, {0: 5, 1: 2}, {0: 5, 1: 3}]) == []
    assert committed_went_back([{0: 5}, {0: 4}]) == ["partition 0: 5 then 4 (snapshot 1)"]

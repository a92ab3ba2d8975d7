"""Power loss through the storage seam (fast tier): the server runs on a `FaultFileSystem`, the
power goes at random moments (half of them tearing unsynced tails), and after recovery each
round's history is checked against the mode's promise. The long tier:
`python tools/reliability.py power-loss`."""

from __future__ import annotations

import pytest

from tools.campaigns.history import OK, History, check
from tools.campaigns.power_loss import _loss_window, _violations, run_power_loss


@pytest.mark.parametrize("fsync", ["always", "interval:50", "never"])
async def test_power_loss_keeps_the_promise_of_each_fsync_mode(fsync: str) -> None:
    result = await run_power_loss(rounds=5, seed=11, fsync=fsync)
    print(result.summary())
    assert result.ok, result.summary()
    assert result.rounds == 5 and result.acked > 500
    if fsync == "always":
        assert result.acked_lost == 0


def test_acked_records_lost_outside_the_modes_window_are_violations() -> None:
    history = History()
    attempt = history.attempt("p", 0, [b"p-0"])
    attempt.outcome, attempt.offset, attempt.acked_at = OK, 0, 10.0
    report = check(history, {0: []}, expect_consumed=False)
    assert report.lost == [b"p-0"]
    assert _violations(report, history, 10.5, _loss_window("always"))
    assert _violations(report, history, 10.5, _loss_window("interval:100"))  # 0.5 s > 0.1 + slack
    assert not _violations(report, history, 10.2, _loss_window("interval:100"))
    assert not _violations(report, history, 99.0, _loss_window("never"))

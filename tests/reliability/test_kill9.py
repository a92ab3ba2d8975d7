"""kill -9 under load (fast tier): a `logbroker serve` subprocess killed 5 times while producers
and a group consumer run; the history check finds nothing lost, duplicated, reordered or phantom,
and committed offsets never go back. The long tier: `python tools/reliability.py kill9`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.campaigns.kill9 import run_kill9


@pytest.mark.parametrize("fsync", ["always", "never"])
async def test_kill9_under_load_loses_nothing_acked(tmp_path: Path, fsync: str) -> None:
    result = await run_kill9(tmp_path, kills=5, seed=7, fsync=fsync)
    print(result.summary())
    assert result.ok, result.summary()
    assert result.kills == 5
    assert result.report.acked > 500  # the producers got through between the kills
    assert result.commit_snapshots > 10

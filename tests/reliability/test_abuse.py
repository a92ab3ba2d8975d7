"""Connection abuse (fast tier): idle connections, slowloris writers, churn and resets against a
`logbroker serve` subprocess while a canary produces and fetches. The long tier (thousands of
connections): `python tools/reliability.py abuse`."""

from __future__ import annotations

from tools.campaigns.abuse import run_abuse


async def test_abusers_are_cut_on_time_and_leave_nothing_behind() -> None:
    result = await run_abuse(idle=200, slowloris=30, churn=300, resets=100, max_connections=260)
    print(result.summary())
    assert result.ok, result.summary()
    assert result.refused >= 20 and result.resets == 2 * 100 and result.churned > 0  # two rounds

"""Quotas and throttles, driven by hand: every call takes `now`, so no test sleeps."""

from __future__ import annotations

import math

import pytest

from logbroker.security.quotas import ConnectionCounter, LoginThrottle, Quotas, QuotaSettings, RateLimiter

# --- RateLimiter ---------------------------------------------------------------------------------


def test_within_rate_never_delays() -> None:
    limiter = RateLimiter(rate=100.0)
    # 10 units every 0.1 s is exactly the rate, for a long time.
    for step in range(1000):
        assert limiter.charge(step * 0.1, 10) == 0.0


def test_bucket_starts_full_and_a_burst_up_to_capacity_is_free() -> None:
    limiter = RateLimiter(rate=100.0, burst_seconds=2.0)
    assert limiter.charge(50.0, 200) == 0.0
    assert limiter.charge(50.0, 1) == pytest.approx(0.01)


def test_burst_past_capacity_delays_by_debt_over_rate() -> None:
    limiter = RateLimiter(rate=100.0)
    assert limiter.charge(0.0, 100) == 0.0
    assert limiter.charge(0.0, 50) == pytest.approx(0.5)
    # Debt adds up: another 100 units makes 150 owed.
    assert limiter.charge(0.0, 100) == pytest.approx(1.5)


def test_refill_pays_debt_back_over_time() -> None:
    limiter = RateLimiter(rate=100.0)
    limiter.charge(0.0, 300)  # 200 in debt: 2 s to get back to zero
    assert limiter.charge(1.0, 0) == pytest.approx(1.0)
    assert limiter.charge(2.0, 0) == 0.0
    # Another second refills to full, and no further: the bucket holds one second's worth.
    assert limiter.charge(3.0, 100) == 0.0
    assert limiter.charge(100.0, 150) == pytest.approx(0.5)


def test_giant_single_request_is_allowed_with_a_proportional_delay() -> None:
    limiter = RateLimiter(rate=1000.0)
    assert limiter.charge(0.0, 1_000_000) == pytest.approx(999.0)
    # The debt stands: the next tiny request waits for it too.
    assert limiter.charge(499.0, 0) == pytest.approx(500.0)


def test_clock_stepping_back_refills_nothing() -> None:
    limiter = RateLimiter(rate=10.0)
    limiter.charge(5.0, 20)
    assert limiter.charge(4.0, 0) == pytest.approx(1.0)
    assert limiter.charge(5.5, 0) == pytest.approx(0.5)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_rate_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)


@pytest.mark.parametrize("burst", [0.0, -1.0, math.inf])
def test_burst_must_be_positive_and_finite(burst: float) -> None:
    with pytest.raises(ValueError, match="burst_seconds"):
        RateLimiter(1.0, burst_seconds=burst)


@pytest.mark.parametrize("amount", [-1.0, math.nan, math.inf])
def test_charge_refuses_nonsense_amounts(amount: float) -> None:
    with pytest.raises(ValueError, match="amount"):
        RateLimiter(1.0).charge(0.0, amount)


# --- Quotas --------------------------------------------------------------------------------------


def test_principals_are_isolated() -> None:
    quotas = Quotas(QuotaSettings(produce_bytes_per_second=1000))
    greedy_delays, polite_delays = [], []
    for step in range(100):
        now = step * 0.1
        greedy_delays.append(quotas.produce("User:greedy", now, 1000))  # ten times its quota
        polite_delays.append(quotas.produce("User:polite", now, 50))  # half its quota
    assert greedy_delays[0] == 0.0
    assert greedy_delays[-1] > 50.0
    assert greedy_delays == sorted(greedy_delays)
    assert set(polite_delays) == {0.0}


def test_each_quota_has_its_own_limiter() -> None:
    quotas = Quotas(
        QuotaSettings(produce_bytes_per_second=100, fetch_bytes_per_second=200, requests_per_second=2)
    )
    assert quotas.produce("User:a", 0.0, 200) == pytest.approx(1.0)
    assert quotas.fetch("User:a", 0.0, 200) == 0.0  # produce debt does not spill into fetch
    assert quotas.fetch("User:a", 0.0, 100) == pytest.approx(0.5)
    assert quotas.request("User:a", 0.0) == 0.0
    assert quotas.request("User:a", 0.0) == 0.0
    assert quotas.request("User:a", 0.0) == pytest.approx(0.5)


def test_overrides_replace_the_defaults_for_their_principal() -> None:
    quotas = Quotas(
        QuotaSettings(produce_bytes_per_second=100),
        overrides={
            "User:ingest": QuotaSettings(produce_bytes_per_second=10_000),
            "User:admin": QuotaSettings(),
        },
    )
    assert quotas.produce("User:ingest", 0.0, 5000) == 0.0
    assert quotas.produce("User:other", 0.0, 5000) == pytest.approx(49.0)
    assert quotas.produce("User:admin", 0.0, 10**9) == 0.0
    assert quotas.enabled


def test_unlimited_settings_give_no_delay_and_keep_no_state() -> None:
    quotas = Quotas(QuotaSettings())
    assert not quotas.enabled
    for step in range(100):
        principal = f"User:{step}"
        assert quotas.produce(principal, 0.0, 10**9) == 0.0
        assert quotas.fetch(principal, 0.0, 10**9) == 0.0
        assert quotas.request(principal, 0.0) == 0.0
    assert len(quotas) == 0


def test_only_the_limited_quotas_delay() -> None:
    quotas = Quotas(QuotaSettings(requests_per_second=1))
    assert quotas.enabled
    assert quotas.produce("User:a", 0.0, 10**9) == 0.0
    assert quotas.fetch("User:a", 0.0, 10**9) == 0.0
    assert quotas.request("User:a", 0.0) == 0.0
    assert quotas.request("User:a", 0.0) == pytest.approx(1.0)


def test_enabled_by_an_override_alone() -> None:
    assert Quotas(QuotaSettings(), overrides={"User:x": QuotaSettings(fetch_bytes_per_second=1)}).enabled
    assert not Quotas(QuotaSettings(), overrides={"User:x": QuotaSettings()}).enabled


def test_principals_beyond_the_bound_evict_the_least_recently_used() -> None:
    quotas = Quotas(QuotaSettings(requests_per_second=1), max_principals=3)
    quotas.request("User:old", 0.0)
    assert quotas.request("User:old", 0.0) == pytest.approx(1.0)  # in debt
    quotas.request("User:kept", 0.0)
    quotas.request("User:b", 0.0)
    quotas.request("User:kept", 0.0)  # used again: now more recent than User:b
    for principal in ("User:c", "User:d"):
        quotas.request(principal, 0.0)
        assert len(quotas) == 3
    # User:kept was used recently enough to keep its debt; User:old was evicted, so it comes back
    # with a full bucket (its debt forgiven: the price of the bound).
    assert quotas.request("User:kept", 0.0) == pytest.approx(2.0)
    assert quotas.request("User:old", 0.0) == 0.0
    assert len(quotas) == 3


def test_many_principals_stay_bounded() -> None:
    quotas = Quotas(QuotaSettings(fetch_bytes_per_second=10), max_principals=100)
    for n in range(1000):
        quotas.fetch(f"User:{n}", float(n), 1)
    assert len(quotas) == 100


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_settings_refuse_nonsense_rates(value: float) -> None:
    with pytest.raises(ValueError, match="produce_bytes_per_second"):
        QuotaSettings(produce_bytes_per_second=value)


# --- LoginThrottle -------------------------------------------------------------------------------


def test_failure_delays_double_up_to_the_cap() -> None:
    throttle = LoginThrottle(base_delay=1.0, max_delay=30.0)
    delays = [throttle.failed("10.0.0.1", float(n)) for n in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_endless_failures_stay_at_the_cap() -> None:
    throttle = LoginThrottle(base_delay=1.0, max_delay=30.0)
    for n in range(5000):
        delay = throttle.failed("10.0.0.1", n * 0.01)
    assert delay == 30.0


def test_failures_are_forgotten_after_the_window() -> None:
    throttle = LoginThrottle(forget_after=300.0)
    for now in (0.0, 100.0, 200.0):
        throttle.failed("10.0.0.1", now)
    # Within the window of the last failure the count keeps going...
    assert throttle.failed("10.0.0.1", 500.0) == 8.0
    # ...and once the last failure is older than the window it starts again.
    assert throttle.failed("10.0.0.1", 800.5) == 1.0
    assert throttle.failed("10.0.0.1", 801.0) == 2.0


def test_forgotten_hosts_take_no_memory() -> None:
    throttle = LoginThrottle(forget_after=10.0)
    for n in range(100):
        throttle.failed(f"10.0.0.{n}", float(n))
    throttle.failed("10.0.1.1", 1000.0)
    assert len(throttle) == 1


def test_hosts_are_isolated() -> None:
    throttle = LoginThrottle()
    for now in range(5):
        throttle.failed("10.0.0.1", float(now))
    assert throttle.failed("10.0.0.2", 5.0) == 1.0
    assert throttle.failed("10.0.0.1", 6.0) == 30.0


def test_hosts_beyond_the_bound_evict_the_oldest() -> None:
    throttle = LoginThrottle(max_hosts=3)
    for host in ("a", "b", "c"):
        throttle.failed(host, 0.0)
        throttle.failed(host, 1.0)
    throttle.failed("a", 2.0)  # a failed last, so b is now the oldest
    throttle.failed("d", 3.0)
    assert len(throttle) == 3
    assert throttle.failed("b", 4.0) == 1.0  # evicted: starts again
    assert throttle.failed("a", 5.0) == 8.0  # kept: its fourth failure


def test_zero_base_delay_never_delays() -> None:
    throttle = LoginThrottle(base_delay=0.0)
    assert {throttle.failed("h", float(n)) for n in range(20)} == {0.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_delay": -1.0},
        {"base_delay": 10.0, "max_delay": 5.0},
        {"max_delay": math.inf},
        {"forget_after": 0.0},
        {"max_hosts": 0},
    ],
)
def test_login_throttle_refuses_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(**kwargs)  # type: ignore[arg-type]


# --- ConnectionCounter ---------------------------------------------------------------------------


def test_connections_are_limited_per_host() -> None:
    counter = ConnectionCounter(max_per_host=2)
    assert counter.try_open("10.0.0.1")
    assert counter.try_open("10.0.0.1")
    assert not counter.try_open("10.0.0.1")
    assert counter.count("10.0.0.1") == 2  # a refused connection is not counted
    assert counter.try_open("10.0.0.2")


def test_closing_frees_a_slot() -> None:
    counter = ConnectionCounter(max_per_host=1)
    assert counter.try_open("10.0.0.1")
    counter.closed("10.0.0.1")
    assert counter.count("10.0.0.1") == 0
    assert counter.try_open("10.0.0.1")


def test_churn_leaves_no_keys_behind() -> None:
    counter = ConnectionCounter(max_per_host=3)
    for n in range(1000):
        host = f"10.0.{n // 256}.{n % 256}"
        assert counter.try_open(host)
        assert counter.try_open(host)
        counter.closed(host)
        counter.closed(host)
    assert len(counter) == 0


def test_unlimited_still_counts() -> None:
    counter = ConnectionCounter(max_per_host=0)
    for _ in range(10_000):
        assert counter.try_open("10.0.0.1")
    assert counter.count("10.0.0.1") == 10_000
    for _ in range(10_000):
        counter.closed("10.0.0.1")
    assert len(counter) == 0


def test_closing_more_than_opened_is_an_error() -> None:
    counter = ConnectionCounter(max_per_host=1)
    with pytest.raises(ValueError, match="no open connection"):
        counter.closed("10.0.0.1")
    counter.try_open("10.0.0.1")
    counter.closed("10.0.0.1")
    with pytest.raises(ValueError, match="no open connection"):
        counter.closed("10.0.0.1")


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_per_host"):
        ConnectionCounter(max_per_host=-1)


def test_wait_is_the_time_left_before_the_next_attempt() -> None:
    throttle = LoginThrottle(base_delay=1.0, max_delay=30.0, forget_after=300.0)
    assert throttle.wait("10.0.0.1", 0.0) == 0.0  # never failed
    assert throttle.failed("10.0.0.1", 10.0) == 1.0
    assert throttle.wait("10.0.0.1", 10.25) == 0.75
    assert throttle.wait("10.0.0.1", 11.0) == 0.0
    assert throttle.failed("10.0.0.1", 12.0) == 2.0  # the second failure doubles it
    assert throttle.wait("10.0.0.1", 13.0) == 1.0
    assert throttle.wait("10.0.0.2", 13.0) == 0.0  # per host
    assert throttle.wait("10.0.0.1", 12.0 + 301.0) == 0.0  # forgotten

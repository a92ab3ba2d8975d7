"""Quotas and throttles: how fast a principal may produce, fetch and send requests, how long a host
waits after a failed login, and how many connections one host may hold.

Everything here is sans-IO and reads no clock: each method takes `now`, seconds from a monotonic
clock, and answers with a delay in seconds. Waiting out that delay - and telling the client about
it in `throttle_time_ms` - is the server's business. Every table is bounded, so a stream of new
principals or hosts cannot grow memory without limit.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ConnectionCounter", "LoginThrottle", "QuotaSettings", "Quotas", "RateLimiter"]

MAX_PRINCIPALS = 10_000
MAX_HOSTS = 10_000


class RateLimiter:
    """A token bucket that may go into debt: `rate` units per second, bursts of `burst_seconds`.

    Kafka never refuses a request for breaking a quota: it does the work, answers, and tells the
    client to wait `throttle_time_ms` (and mutes the connection for that long). Refusing would
    waste the work already done - the bytes have been received, the records read - and a client
    told "no" simply retries at once, which costs more. So `charge` always subtracts, the bucket
    may go negative, and the delay is the time the refill takes to pay the debt back to zero. A
    request bigger than the whole bucket is therefore allowed and just earns a proportional delay.
    """

    def __init__(self, rate: float, burst_seconds: float = 1.0) -> None:
        # "Unlimited" is the caller's decision (no limiter at all), not a rate of 0 or infinity:
        # both would make the delay arithmetic divide by zero or produce NaN.
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive finite number, not {rate!r}")
        if not (math.isfinite(burst_seconds) and burst_seconds > 0):
            raise ValueError(f"burst_seconds must be a positive finite number, not {burst_seconds!r}")
        self.rate = rate
        self.capacity = rate * burst_seconds
        self._tokens = self.capacity
        # None until the first charge: the bucket starts full whenever it is first used.
        self._updated: float | None = None

    def charge(self, now: float, amount: float) -> float:
        """Take `amount` for work already done; return how long the client should wait (seconds)."""
        if not (math.isfinite(amount) and amount >= 0):
            raise ValueError(f"amount must be a non-negative finite number, not {amount!r}")
        self._refill(now)
        self._tokens -= amount
        return max(0.0, -self._tokens / self.rate)

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
        elif now > self._updated:
            # A clock that steps back (it should not: the clock is monotonic) refills nothing.
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now


def _rate(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"{attribute.name} must be a non-negative finite number (0 = unlimited), not {value!r}"
        )


@attrs.frozen
class QuotaSettings:
    """Rates one principal may use; 0 means unlimited (Kafka's quota configs of the same names)."""

    produce_bytes_per_second: float = attrs.field(default=0.0, validator=_rate)
    fetch_bytes_per_second: float = attrs.field(default=0.0, validator=_rate)
    requests_per_second: float = attrs.field(default=0.0, validator=_rate)

    @property
    def unlimited(self) -> bool:
        return not (self.produce_bytes_per_second or self.fetch_bytes_per_second or self.requests_per_second)


def _limiter(rate: float) -> RateLimiter | None:
    return RateLimiter(rate) if rate else None


@attrs.define
class _PrincipalLimiters:
    produce: RateLimiter | None
    fetch: RateLimiter | None
    request: RateLimiter | None

    @classmethod
    def for_settings(cls, settings: QuotaSettings) -> _PrincipalLimiters:
        return cls(
            _limiter(settings.produce_bytes_per_second),
            _limiter(settings.fetch_bytes_per_second),
            _limiter(settings.requests_per_second),
        )


class Quotas:
    """Per-principal produce, fetch and request-rate limiters, created when a principal first shows up.

    Each method charges one limiter and returns its delay; a request subject to several quotas (a
    produce counts as bytes and as a request) waits for the largest, as in Kafka. A principal whose
    settings are all unlimited costs no memory at all.

    At most `max_principals` principals keep a limiter; past that the least recently used is
    forgotten. A forgotten limiter that was full loses nothing (it would come back full). One still
    in debt has its debt forgiven - but it was idle while `max_principals` others were active, so
    its refill has most likely paid the debt already.
    """

    def __init__(
        self,
        settings: QuotaSettings,
        overrides: Mapping[str, QuotaSettings] | None = None,
        *,
        max_principals: int = MAX_PRINCIPALS,
    ) -> None:
        if max_principals < 1:
            raise ValueError(f"max_principals must be at least 1, not {max_principals!r}")
        self.settings = settings
        self.overrides: Mapping[str, QuotaSettings] = dict(overrides or {})
        self.max_principals = max_principals
        self._limiters: OrderedDict[str, _PrincipalLimiters] = OrderedDict()
        self._enabled = not all(s.unlimited for s in (self.settings, *self.overrides.values()))

    @property
    def enabled(self) -> bool:
        """Whether any principal has any quota (when not, the server can skip quotas altogether)."""
        return self._enabled

    def produce(self, principal: str, now: float, nbytes: int) -> float:
        """Charge `nbytes` of produced record data; return the delay in seconds (0 when unlimited)."""
        limiters = self._for(principal)
        return limiters.produce.charge(now, nbytes) if limiters and limiters.produce else 0.0

    def fetch(self, principal: str, now: float, nbytes: int) -> float:
        """Charge `nbytes` of fetched record data; return the delay in seconds (0 when unlimited)."""
        limiters = self._for(principal)
        return limiters.fetch.charge(now, nbytes) if limiters and limiters.fetch else 0.0

    def request(self, principal: str, now: float) -> float:
        """Charge one request; return the delay in seconds (0 when unlimited)."""
        limiters = self._for(principal)
        return limiters.request.charge(now, 1) if limiters and limiters.request else 0.0

    def __len__(self) -> int:
        """How many principals currently hold a limiter."""
        return len(self._limiters)

    def _for(self, principal: str) -> _PrincipalLimiters | None:
        limiters = self._limiters.get(principal)
        if limiters is not None:
            self._limiters.move_to_end(principal)
            return limiters
        settings = self.overrides.get(principal, self.settings)
        if settings.unlimited:
            return None
        limiters = self._limiters[principal] = _PrincipalLimiters.for_settings(settings)
        if len(self._limiters) > self.max_principals:
            self._limiters.popitem(last=False)
        return limiters


@attrs.define
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Holds back the next login attempt of a client host after a failed one, for a wait that
    doubles with each recent failure.

    The wait is `base_delay * 2**(failures - 1)`, capped at `max_delay`: a user who mistypes a
    password waits a second, a script guessing passwords soon waits `max_delay` per guess. It is
    the next attempt that waits (`wait`), not the failure's answer: a delayed answer tells a
    guesser nothing it cannot learn by giving up on it after a moment (a right password is
    answered at once), and would hold a connection open meanwhile. Failures
    are counted while they keep coming: a host whose last failure is older than `forget_after`
    starts again from one. A successful login forgives nothing: otherwise a guesser holding one
    valid account could log in between guesses at another account's password and keep the wait
    at its shortest.

    The delay is per host rather than per user name so that a guesser cannot lock a real user out
    by failing on purpose with that user's name.

    At most `max_hosts` hosts are remembered; past that the one whose last failure is oldest is
    forgotten. `now` must be monotonic: hosts are kept in order of their last failure.
    """

    def __init__(
        self,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        forget_after: float = 300.0,
        max_hosts: int = MAX_HOSTS,
    ) -> None:
        if not (math.isfinite(base_delay) and base_delay >= 0):
            raise ValueError(f"base_delay must be a non-negative finite number, not {base_delay!r}")
        if not (math.isfinite(max_delay) and max_delay >= base_delay):
            raise ValueError(f"max_delay must be finite and at least base_delay, not {max_delay!r}")
        if not forget_after > 0:
            raise ValueError(f"forget_after must be positive, not {forget_after!r}")
        if max_hosts < 1:
            raise ValueError(f"max_hosts must be at least 1, not {max_hosts!r}")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_hosts = max_hosts
        self._hosts: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, host: str, now: float) -> float:
        """How long `host` must still wait before it may try to log in again (0: it may)."""
        failures = self._hosts.get(host)
        if failures is None or now - failures.last > self.forget_after:
            return 0.0
        return max(0.0, failures.last + self._delay(failures.count) - now)

    def failed(self, host: str, now: float) -> float:
        """Record a failed login from `host`; return how long it must wait before the next."""
        self._forget_old(now)
        failures = self._hosts.pop(host, None)
        if failures is None:
            failures = _Failures(0, now)
        failures.count += 1
        failures.last = now
        self._hosts[host] = failures  # re-inserted last: the table stays in order of last failure
        if len(self._hosts) > self.max_hosts:
            self._hosts.popitem(last=False)
        return self._delay(failures.count)

    def _delay(self, count: int) -> float:
        # Past 2**1023 a float power overflows; the cap is reached long before on any sane settings.
        return min(self.max_delay, self.base_delay * 2.0 ** min(count - 1, 1023))

    def __len__(self) -> int:
        """How many hosts have recent failures remembered."""
        return len(self._hosts)

    def _forget_old(self, now: float) -> None:
        # Oldest first, so the scan stops at the first host still within the window.
        while self._hosts:
            host, failures = next(iter(self._hosts.items()))
            if now - failures.last <= self.forget_after:
                break
            del self._hosts[host]


class ConnectionCounter:
    """Open connections per client host, with a limit per host (Kafka's `max.connections.per.ip`).

    Only hosts with open connections have an entry, so memory follows the open connections, not
    the history of hosts that ever connected. Counting goes on when unlimited (`max_per_host` 0),
    so `count` always answers.
    """

    def __init__(self, max_per_host: int) -> None:
        if max_per_host < 0:
            raise ValueError(f"max_per_host must be 0 (unlimited) or more, not {max_per_host!r}")
        self.max_per_host = max_per_host
        self._open: dict[str, int] = {}

    def try_open(self, host: str) -> bool:
        """Count a new connection from `host`, or return False (counting nothing) if it is at its limit."""
        count = self._open.get(host, 0)
        if self.max_per_host and count >= self.max_per_host:
            return False
        self._open[host] = count + 1
        return True

    def closed(self, host: str) -> None:
        """A connection `try_open` accepted has closed.

        Closing more than was opened is a bug in the caller, and raises rather than letting the
        count drift below what is really open (which would quietly raise the host's limit).
        """
        count = self._open.get(host, 0)
        if count == 0:
            raise ValueError(f"no open connection from {host!r} to close")
        if count == 1:
            del self._open[host]
        else:
            self._open[host] = count - 1

    def count(self, host: str) -> int:
        """How many connections `host` has open."""
        return self._open.get(host, 0)

    def __len__(self) -> int:
        """How many hosts have connections open."""
        return len(self._open)

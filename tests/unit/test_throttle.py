"""The per-hub token bucket: burst, debt, refill, per-hub independence (fake clock, no sleeping)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock
from unprovision.throttle import HubBudget, InMemoryRateLimiter, TokenBucket, wait_for


def test_a_full_bucket_lets_the_burst_through_without_waiting() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=100, burst=100), clock=clock)
    assert limiter.acquire("hub-a.example", 60) == 0.0
    assert limiter.acquire("hub-a.example", 40) == 0.0


def test_spending_beyond_the_budget_waits_until_the_debt_is_refilled() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=100, burst=100), clock=clock)
    limiter.acquire("hub", 100)
    assert limiter.acquire("hub", 100) == pytest.approx(60.0)  # a 100-device bulk call costs a minute on S1
    assert limiter.acquire("hub", 50) == pytest.approx(90.0)  # reservations queue up behind earlier debt


def test_the_bucket_refills_with_time_but_never_beyond_its_burst() -> None:
    bucket = TokenBucket(HubBudget(ops_per_minute=60, burst=10), now=0.0)
    assert bucket.reserve(10, now=0.0) == 0.0
    assert bucket.reserve(5, now=5.0) == 0.0  # 5 s at 1 op/s refilled 5 tokens
    assert bucket.reserve(20, now=1_000.0) == pytest.approx(10.0)  # capped at 10 tokens, 10 in debt


def test_hubs_have_independent_budgets_and_host_names_ignore_case() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter({"big.example": HubBudget.for_units(3)}, clock=clock)
    assert limiter.acquire("small.example", 100) == 0.0
    assert limiter.acquire("small.example", 100) > 0
    assert limiter.acquire("BIG.example", 300) == 0.0  # three S1 units: 300 ops/min
    assert limiter.acquire("big.example", 30) == pytest.approx(6.0)


def test_wait_for_sleeps_exactly_the_reserved_delay() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=100, burst=100), clock=clock)
    assert wait_for(limiter, "hub", 100, clock.sleep) == 0.0
    delay = wait_for(limiter, "hub", 100, clock.sleep)
    assert clock.slept == [delay]
    assert delay == pytest.approx(60.0)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(HubBudget(ops_per_minute=0, burst=10), now=0.0)

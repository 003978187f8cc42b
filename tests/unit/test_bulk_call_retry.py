"""``bulk_call`` retries through the project's one retry mechanism (``shared/retry.py``): only a 429
(``Throttled``), after at least its Retry-After, a bounded number of times, reserving budget each attempt."""

from __future__ import annotations

import pytest

from shared.errors import NotFound, Throttled, Transient
from shared.ports import Tally
from shared.retry import retries_off
from tests.fakes import FakeClock, FakeDeviceRegistry
from unprovision.group.batches import THROTTLE_POLICY, THROTTLE_RETRIES, bulk_call

HUB = "hub-a.example"


class CountingLimiter:
    """A ``RateLimiter`` that always allows at once and records every reservation."""

    def __init__(self) -> None:
        self.reserved: list[tuple[str, int]] = []

    def acquire(self, hub: str, ops: int) -> float:
        self.reserved.append((hub, ops))
        return 0.0


def registry_with(clock: FakeClock, *faults: Exception, op: str = "bulk_disable") -> FakeDeviceRegistry:
    registry = FakeDeviceRegistry(HUB, clock=clock)
    for n in range(3):
        registry.add_device(f"dev-{n}")
    for nth, exc in enumerate(faults, start=1):
        registry.fail_on(op, nth, exc)
    return registry


def call(
    registry: FakeDeviceRegistry, clock: FakeClock, limiter: CountingLimiter, action: str = "disable"
) -> Tally:
    return bulk_call(registry, action, ["dev-0", "dev-1", "dev-2"], limiter=limiter, sleep=clock.sleep)


def test_a_429_is_retried_after_at_least_its_retry_after_and_reserves_the_budget_again() -> None:
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, Throttled("429", retry_after=7.0))
    tally = call(registry, clock, limiter)
    assert tally.changed == 3
    assert registry.calls["bulk_disable"] == 2
    assert clock.slept
    assert clock.slept[0] >= 7.0
    assert limiter.reserved == [(HUB, 3), (HUB, 3)]


def test_a_429_on_a_bulk_delete_is_retried_too() -> None:
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, Throttled("429", retry_after=2.0), op="bulk_delete")
    assert call(registry, clock, limiter, "delete").changed == 3
    assert registry.calls["bulk_delete"] == 2


def test_a_429_without_retry_after_waits_a_bounded_backoff() -> None:
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, Throttled("429"), Throttled("429"))
    assert call(registry, clock, limiter).changed == 3
    assert len(clock.slept) == 2
    assert all(0.0 <= s <= THROTTLE_POLICY.wait_max for s in clock.slept)


def test_retries_are_bounded_then_the_429_surfaces() -> None:
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, *[Throttled("429", retry_after=1.0) for _ in range(THROTTLE_RETRIES + 2)])
    with pytest.raises(Throttled):
        call(registry, clock, limiter)
    assert registry.calls["bulk_disable"] == THROTTLE_RETRIES + 1
    assert len(limiter.reserved) == THROTTLE_RETRIES + 1


@pytest.mark.parametrize("error", [Transient("503 from the hub"), NotFound("no such hub device")])
def test_errors_other_than_a_429_are_not_retried_here(error: Exception) -> None:
    """A 5xx is the adapter's to retry (its own ``Retrier``); a permanent error is never retried."""
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, error)
    with pytest.raises(type(error)):
        call(registry, clock, limiter)
    assert registry.calls["bulk_disable"] == 1
    assert clock.slept == []


def test_retries_off_makes_one_attempt() -> None:
    clock, limiter = FakeClock(), CountingLimiter()
    registry = registry_with(clock, Throttled("429", retry_after=1.0))
    with retries_off(), pytest.raises(Throttled):
        call(registry, clock, limiter)
    assert registry.calls["bulk_disable"] == 1

"""The retry helper: which errors it retries, how long it waits, and when it gives up (no real sleeping)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest

from shared.errors import AuthFailed, NotFound, PreconditionFailed, Throttled, Transient
from shared.retry import Retrier, RetryPolicy, retries_enabled, retries_off
from tests.support.doubles import FakeTime


def flaky(failures: list[Exception], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A callable that raises the given errors in turn, then returns ``result``; counts its calls."""
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if failures:
            raise failures.pop(0)
        return result

    return fn, calls


def retrier(policy: RetryPolicy | None = None, seed: int = 7) -> tuple[Retrier, FakeTime]:
    t = FakeTime()
    return Retrier(policy or RetryPolicy(), sleep=t.sleep, clock=t.clock, rng=random.Random(seed)), t


def test_transient_errors_are_retried_until_success() -> None:
    r, t = retrier()
    fn, calls = flaky([Transient("503"), Transient("503")])
    assert r.call(fn, name="op") == "ok"
    assert calls[0] == 3
    assert len(t.sleeps) == 2


@pytest.mark.parametrize("error", [AuthFailed("401"), NotFound("404"), ValueError("bug")])
def test_non_transient_errors_are_raised_after_one_attempt(error: Exception) -> None:
    r, t = retrier()
    fn, calls = flaky([error])
    with pytest.raises(type(error)):
        r.call(fn)
    assert calls[0] == 1
    assert t.sleeps == []


def test_precondition_failed_is_not_repeated_blindly() -> None:
    r, _ = retrier()
    fn, calls = flaky([PreconditionFailed("412")])
    with pytest.raises(PreconditionFailed):
        r.call(fn)
    assert calls[0] == 1


def test_gives_up_after_the_attempt_limit_with_the_last_error() -> None:
    r, t = retrier(RetryPolicy(attempts=3))
    errors: list[Exception] = [Transient("one"), Transient("two"), Transient("three"), Transient("four")]
    fn, calls = flaky(errors)
    with pytest.raises(Transient, match="three"):
        r.call(fn)
    assert calls[0] == 3
    assert len(t.sleeps) == 2


def test_waits_are_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=6, wait_initial=1.0, wait_exp_base=2.0, wait_max=5.0, timeout=1000)
    r, t = retrier(policy)
    fn, _ = flaky([Transient("x") for _ in range(5)])
    r.call(fn)
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(t.sleeps) == 5
    for slept, ceiling in zip(t.sleeps, ceilings, strict=True):
        assert 0.0 <= slept <= ceiling
    # Jitter: the waits are not all identical to their ceilings.
    assert t.sleeps != ceilings


def test_throttled_waits_at_least_the_retry_after() -> None:
    r, t = retrier(RetryPolicy(wait_initial=0.01, wait_max=0.01))
    fn, calls = flaky([Throttled("429", retry_after=3.0)])
    assert r.call(fn) == "ok"
    assert calls[0] == 2
    assert t.sleeps[0] >= 3.0


def test_retry_after_is_capped() -> None:
    r, t = retrier(RetryPolicy(max_retry_after=2.0, timeout=100))
    fn, _ = flaky([Throttled("429", retry_after=3600.0)])
    r.call(fn)
    assert t.sleeps[0] <= 2.0


def test_gives_up_when_the_next_wait_would_pass_the_time_budget() -> None:
    r, t = retrier(RetryPolicy(attempts=10, timeout=5.0, max_retry_after=30.0))
    fn, calls = flaky([Throttled("429", retry_after=2.0), Throttled("429", retry_after=4.0)])
    with pytest.raises(Throttled):
        r.call(fn)
    assert calls[0] == 2
    assert t.sleeps == [2.0]


def test_retries_off_makes_one_attempt_and_is_restored() -> None:
    r, t = retrier()
    fn, calls = flaky([Transient("503")])
    with retries_off():
        assert not retries_enabled()
        with pytest.raises(Transient):
            r.call(fn)
    assert retries_enabled()
    assert calls[0] == 1
    assert t.sleeps == []


def test_each_retry_is_logged_with_the_operation_and_attempt(caplog: pytest.LogCaptureFixture) -> None:
    r, _ = retrier()
    fn, _ = flaky([Transient("HTTP 503")])
    with caplog.at_level(logging.WARNING, logger="shared.retry"):
        r.call(fn, name="hub get device")
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("hub get device" in m and "attempt 1" in m for m in messages)


def test_a_transient_error_with_a_retry_after_is_waited_for_too() -> None:
    r, t = retrier(RetryPolicy(wait_initial=0.01, wait_max=0.01))
    fn, calls = flaky([Transient("503", retry_after=2.0)])
    assert r.call(fn, name="op") == "ok"
    assert calls[0] == 2
    assert t.sleeps == [2.0]


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"timeout": 0}, {"wait_initial": -1.0}])
def test_policy_rejects_nonsense_bounds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]

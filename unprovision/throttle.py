"""Per-hub identity-registry budget: a token bucket and the in-memory ``RateLimiter``.

IoT Hub counts bulk registry calls per device, not per call (S1/S2: 100 identity ops/min/unit, S3: 5,000),
so a 100-device bulk call spends 100 tokens. The bucket reserves tokens up front and may go into debt; the
returned wait tells the caller how long to hold the call back. One process shares one
``InMemoryRateLimiter``; several Function instances need a store-backed implementation of the same
port: ``shared.adapters.ratelimit_tables.TableRateLimiter``, a bucket in Table storage. The app's wiring
(``unprovision.wiring.rate_limiter``) uses that Table-storage bucket whenever the journal's storage is a
connection string, and this in-memory one only for an identity-based journal (see docs/engine.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.ports import RateLimiter

Clock = Callable[[], float]
Sleep = Callable[[float], None]

S1_OPS_PER_MINUTE = 100.0  # per unit, documented for Free/S1/S2 (and B1/B2)


@dataclass(frozen=True)
class HubBudget:
    """Identity-registry budget of one hub: ``ops_per_minute`` refill and ``burst`` capacity (tokens)."""

    ops_per_minute: float = S1_OPS_PER_MINUTE
    burst: float = S1_OPS_PER_MINUTE

    @classmethod
    def for_units(cls, units: int, per_unit: float = S1_OPS_PER_MINUTE) -> HubBudget:
        rate = per_unit * max(1, units)
        return cls(ops_per_minute=rate, burst=rate)


class TokenBucket:
    """One bucket; not thread-safe on its own (the limiter serialises access)."""

    def __init__(self, budget: HubBudget, now: float) -> None:
        if budget.ops_per_minute <= 0 or budget.burst <= 0:
            raise ValueError("a hub budget needs a positive rate and burst")
        self._rate = budget.ops_per_minute / 60.0  # tokens per second
        self._burst = budget.burst
        self._tokens = budget.burst
        self._last = now

    def reserve(self, ops: int, now: float) -> float:
        """Take ``ops`` tokens (possibly into debt) and return how long to wait until the debt is paid."""
        if ops < 0:
            raise ValueError("ops must be >= 0")
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._last = max(self._last, now)
        self._tokens -= ops
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class InMemoryRateLimiter(RateLimiter):
    """``RateLimiter`` for one process: a bucket per hub, made on first use from ``budgets``/``default``."""

    def __init__(
        self,
        budgets: Mapping[str, HubBudget] | None = None,
        *,
        default: HubBudget | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._budgets = {hub.lower(): b for hub, b in (budgets or {}).items()}
        self._default = default or HubBudget()
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def acquire(self, hub: str, ops: int) -> float:
        key = hub.lower()  # host names are case-insensitive
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(self._budgets.get(key, self._default), now)
                self._buckets[key] = bucket
            return bucket.reserve(ops, now)


def wait_for(limiter: RateLimiter, hub: str, ops: int, sleep: Sleep = time.sleep) -> float:
    """Reserve budget and sleep until it is ours; returns the seconds slept (for progress and tests)."""
    delay = limiter.acquire(hub, ops)
    if delay > 0:
        sleep(delay)
    return delay

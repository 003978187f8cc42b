"""``TableRateLimiter`` on Azurite: one hub budget shared by several processes and threads holds.

Each worker (a separate OS process running this file as a script, with two threads, each thread its own
limiter instance and table client — as separate Function instances would be) reserves tokens, waits what it
is told, and records when its "call" happens. The test then checks every time window: the ops that started
in it never exceed ``burst + rate * window`` (plus one reservation for the window's edge).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.ratelimit_tables import Budget, TableRateLimiter, hub_key
from tests.support.azurite_fixtures import unique_prefix

HUB = "hub-1.example.test"
RATE_PER_MIN = 3000.0  # 50 ops/s: a second or two of contention, not minutes
BURST = 10.0
OPS = 2
CALLS_PER_THREAD = 8
THREADS = 2
PROCESSES = 3
ROOT = Path(__file__).resolve().parents[2]


def worker(connection_string: str, prefix: str, start_at: float) -> list[float]:
    """``THREADS`` threads, each with its own limiter (own client); returns the call times (epoch s)."""
    times: list[float] = []
    lock = threading.Lock()

    def spend() -> None:
        limiter = TableRateLimiter.from_connection_string(
            connection_string, prefix=prefix, create_table=False,
            default=Budget(ops_per_minute=RATE_PER_MIN, burst=BURST))
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(CALLS_PER_THREAD):
            wait = limiter.acquire(HUB, OPS)
            time.sleep(wait)
            with lock:
                times.append(time.time())

    threads = [threading.Thread(target=spend) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def max_ops_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    best, low = 0, 0
    for high, t in enumerate(ordered):
        while t - ordered[low] > window:
            low += 1
        best = max(best, (high - low + 1) * OPS)
    return best


@pytest.fixture
def limiter_table(azurite: Any) -> tuple[str, str]:
    prefix = unique_prefix()
    TableRateLimiter.from_connection_string(azurite.connection_string, prefix=prefix)  # creates the table
    return azurite.connection_string, prefix


@pytest.mark.slow
def test_processes_and_threads_sharing_one_hub_budget_stay_within_it(limiter_table: tuple[str, str]) -> None:
    connection_string, prefix = limiter_table
    start_at = time.time() + 1.5  # every process starts spending at once, after interpreter start-up
    children = [subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_ratelimit_tables", connection_string, prefix,
         str(start_at)], cwd=ROOT,
        stdout=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    times: list[float] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        times.extend(json.loads(out))
    total_ops = len(times) * OPS
    assert total_ops == PROCESSES * THREADS * CALLS_PER_THREAD * OPS
    rate = RATE_PER_MIN / 60.0
    for window in (0.25, 0.5, 1.0):
        allowed = BURST + rate * window + OPS
        assert max_ops_in_window(times, window) <= allowed, f"window {window}s over budget"
    elapsed = max(times) - min(times)
    assert elapsed >= (total_ops - BURST - OPS) / rate * 0.9  # the budget really held the callers back


def test_a_fresh_bucket_grants_the_burst_then_charges_debt_at_the_hub_rate(
        limiter_table: tuple[str, str]) -> None:
    connection_string, prefix = limiter_table
    now = [1_000.0]
    limiter = TableRateLimiter.from_connection_string(
        connection_string, prefix=prefix, create_table=False, clock=lambda: now[0],
        budgets={HUB.upper(): Budget(ops_per_minute=60.0, burst=100.0)})
    assert limiter.acquire(HUB, 100) == 0.0
    assert limiter.acquire(HUB, 30) == pytest.approx(30.0)  # 30 tokens of debt at 1 token/s
    now[0] += 10.0
    assert limiter.acquire(HUB, 0) == pytest.approx(20.0)  # 10 s repaid 10 tokens
    other = TableRateLimiter.from_connection_string(connection_string, prefix=prefix, create_table=False,
                                                    clock=lambda: now[0])
    assert other.acquire("hub-2.example.test", 100) == 0.0  # another hub, another bucket


def test_a_lagging_clock_does_not_refill_the_bucket_backwards(limiter_table: tuple[str, str]) -> None:
    connection_string, prefix = limiter_table
    budget = Budget(ops_per_minute=60.0, burst=10.0)
    ahead = TableRateLimiter.from_connection_string(connection_string, prefix=prefix, create_table=False,
                                                    clock=lambda: 2_000.0, default=budget)
    behind = TableRateLimiter.from_connection_string(connection_string, prefix=prefix, create_table=False,
                                                     clock=lambda: 1_990.0, default=budget)
    assert ahead.acquire(HUB, 10) == 0.0
    assert behind.acquire(HUB, 5) == pytest.approx(5.0)


def test_hub_names_that_are_not_host_names_never_reach_the_table() -> None:
    for bad in ("hub/1", "hub'1", "", "a#b"):
        with pytest.raises(ValueError, match="host name"):
            hub_key(bad)


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2], float(sys.argv[3]))))

"""Timer triggers: NCRONTAB semantics (seconds first, day-of-month AND day-of-week), fire-now, failures."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from devhost.host import Host
from devhost.timers import ScheduleError, occurrences

HostFactory = Callable[..., Host]


def test_friday_the_13th_schedule_fires_only_on_friday_the_13th() -> None:
    found = list(itertools.islice(occurrences("0 0 0 13 * 5", datetime(2026, 1, 1, tzinfo=UTC)), 3))
    assert found == [
        datetime(2026, 2, 13, tzinfo=UTC),
        datetime(2026, 3, 13, tzinfo=UTC),
        datetime(2026, 11, 13, tzinfo=UTC),
    ]
    assert all(d.weekday() == 4 and d.day == 13 for d in found)


def test_first_field_is_seconds() -> None:
    start = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    found = list(itertools.islice(occurrences("*/15 * * * * *", start), 3))
    assert [d.second for d in found] == [15, 30, 45]


@pytest.mark.parametrize("expression", ["0 */5 * * *", "* * * * * * *", "61 * * * * *"])
def test_malformed_schedules_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleError):
        next(occurrences(expression, datetime(2026, 1, 1, tzinfo=UTC)))


def test_fire_now_invokes_with_timer_request(make_host: HostFactory) -> None:
    host = make_host(run_timers=False, serve_http=False)
    assert host.fire_timer("tick") is True
    assert host.index is not None
    assert ("tick", False) in host.index.module.CALLS


def test_failing_timer_is_logged_and_the_schedule_continues(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(run_timers=False, serve_http=False)
    with caplog.at_level(logging.ERROR, logger="devhost.timer"):
        assert host.fire_timer("friday13") is False
        assert host.fire_timer("friday13", past_due=True) is False
    assert host.index is not None
    assert [v for n, v in host.index.module.CALLS if n == "friday13"] == [False, True]
    assert "schedule continues" in caplog.text


def test_schedule_runs_the_function_when_due(make_host: HostFactory) -> None:
    host = make_host(serve_http=False, settings={"TOY_SCHEDULE": "* * * * * *"})  # every second
    assert host.index is not None
    deadline = time.monotonic() + 10
    while sum(1 for n, _ in host.index.module.CALLS if n == "tick") < 2:
        assert time.monotonic() < deadline, "timer did not fire twice"
        time.sleep(0.1)
    assert host.timers["tick"].next_run is not None

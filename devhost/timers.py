"""Timer triggers: six-field NCRONTAB schedules, ``runOnStartup``, fire-now (docs/azure-behaviour.md §F5).

``croniter`` with ``second_at_beginning=True, day_or=False`` reproduces NCRONTAB, where day-of-month AND
day-of-week must both match. Times are UTC (Azure's default, no ``WEBSITE_TIME_ZONE`` support).

Deliberate limits: no schedule monitor (nothing is persisted), so a run is past due only when it starts more
than ``PAST_DUE_TOLERANCE_S`` after its occurrence (e.g. the previous run overran) — that threshold is our
choice, not the host's. The TimeSpan schedule form (``hh:mm:ss``, App Service plan only) is not supported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.app_index import FunctionInfo, InvocationResult, TimerSpec

log = logging.getLogger("devhost.timer")

PAST_DUE_TOLERANCE_S = 1.0
NCRONTAB_FIELDS = 6

Invoker = Callable[[FunctionInfo, Any], InvocationResult]
ResultHandler = Callable[[FunctionInfo, InvocationResult], None]
Clock = Callable[[], datetime]


class ScheduleError(ValueError):
    """The schedule is not a six-field NCRONTAB expression."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_schedule(expression: str, start: datetime) -> croniter:
    """A croniter over NCRONTAB ``{second} {minute} {hour} {day} {month} {day-of-week}`` from ``start``."""
    fields = expression.split()
    if len(fields) != NCRONTAB_FIELDS:
        raise ScheduleError(f"NCRONTAB needs six fields (seconds first), got {len(fields)}: {expression!r}")
    try:
        return croniter(expression, start, second_at_beginning=True, day_or=False, ret_type=datetime)
    except (ValueError, KeyError) as exc:
        raise ScheduleError(f"invalid NCRONTAB expression {expression!r}: {exc}") from exc


def occurrences(expression: str, start: datetime) -> Iterator[datetime]:
    """Occurrences strictly after ``start`` (give an aware datetime; naive means UTC)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    schedule = parse_schedule(expression, start)
    while True:
        yield schedule.get_next(datetime)


def timer_request(past_due: bool, last: datetime | None, nxt: datetime | None) -> TimerRequest:
    """The ``TimerRequest`` the worker builds from the host's TimerInfo JSON."""
    status = {
        "Last": last.isoformat() if last else None,
        "Next": nxt.isoformat() if nxt else None,
        "LastUpdated": _utcnow().isoformat(),
    }
    return TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})


class TimerRunner:
    """Runs one timer function on its schedule in a thread; ``fire_now()`` runs it at once."""

    def __init__(
        self,
        info: FunctionInfo,
        invoker: Invoker,
        on_result: ResultHandler | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        if not isinstance(info.spec, TimerSpec):
            raise TypeError(f"{info.name} is not a timer-triggered function")
        self.info = info
        self.spec = info.spec
        parse_schedule(self.spec.schedule, clock())  # fail at start-up, not at the first occurrence
        self._invoker = invoker
        self._on_result = on_result
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one run at a time, like the host's singleton listener
        self._last: datetime | None = None
        self.next_run: datetime | None = None
        self._thread = threading.Thread(target=self._loop, name=f"timer-{info.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def fire_now(self, past_due: bool = False) -> bool:
        """Run the function now on the caller's thread; False when it raised (logged, schedule unaffected)."""
        return self._run(past_due)

    def _run(self, past_due: bool) -> bool:
        with self._lock:
            request = timer_request(past_due, self._last, self.next_run)
            self._last = self._clock()
            try:
                result = self._invoker(self.info, request)
                if self._on_result:
                    self._on_result(self.info, result)
            except Exception:
                log.exception("timer function %s failed; the schedule continues", self.info.name)
                return False
            return True

    def _loop(self) -> None:
        if self.spec.run_on_startup:
            self._run(past_due=False)
        upcoming = occurrences(self.spec.schedule, self._clock())
        self.next_run = next(upcoming)
        while not self._stop.is_set():
            wait = (self.next_run - self._clock()).total_seconds()
            if wait > 0 and self._stop.wait(min(wait, 60.0)):
                return
            if wait > 0:
                continue
            due = self.next_run
            late = (self._clock() - due) > timedelta(seconds=PAST_DUE_TOLERANCE_S)
            # Skip occurrences missed while running; the next one is computed from now, as the host does.
            upcoming = occurrences(self.spec.schedule, max(self._clock(), due))
            self.next_run = next(upcoming)
            self._run(past_due=late)

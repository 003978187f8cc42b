"""The project's one retry mechanism for calls to Azure services (in the spirit of hynek/stamina).

Why our own: the SDKs' built-in retries (msrest over urllib3 2.x) never cover POST — bulk registry
calls, queries and attestation reads — and stop on a 429 without ``Retry-After``; the Storage SDK's are
switched off so that a journal write is retried in the open. Every adapter (IoT SDKs and Storage alike)
translates a failure first, then runs the call under a ``Retrier``, which retries only errors that say
they may pass (``shared.errors.Transient`` and subclasses), a bounded number of times within a bounded
total time, with exponential backoff and full jitter, and waits at least the ``retry_after`` the service
asked for.

It lives in the domain package so that the adapters (every SDK and Storage call) and the service layer
(the group work's throttled bulk calls, ``unprovision/group/batches.py``) share it; it does no I/O of its
own, and its ``sleep`` and ``clock`` are injectable (the defaults are the process's).

Unit tests switch retrying off for a block with ``retries_off()`` (process-wide, restored on exit) or
inject their own ``sleep``/``clock``/``rng`` to observe the waits without waiting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import PreconditionFailed, Transient

T = TypeVar("T")

log = logging.getLogger(__name__)

_switch_lock = threading.Lock()
_enabled = True


def retries_enabled() -> bool:
    """Whether retrying is on (it is, unless a ``retries_off()`` block is active)."""
    return _enabled


@contextmanager
def retries_off() -> Iterator[None]:
    """Within this block every ``Retrier`` makes one attempt only: for tests that want errors at once."""
    global _enabled  # noqa: PLW0603 - a deliberate process-wide switch, restored on exit
    with _switch_lock:
        previous, _enabled = _enabled, False
    try:
        yield
    finally:
        with _switch_lock:
            _enabled = previous


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults suit one request to DPS or IoT Hub inside a Function invocation.

    ``retry_on`` names the error types worth another attempt; ``never_on`` carves exceptions out of
    them (by default ``PreconditionFailed``: repeating a request with a stale ETag cannot succeed —
    callers re-read instead).
    """

    attempts: int = 5
    timeout: float = 45.0  # seconds, total, including waits
    wait_initial: float = 0.25
    wait_max: float = 8.0
    wait_exp_base: float = 2.0
    max_retry_after: float = 30.0  # never sleep longer than this for one Retry-After
    retry_on: tuple[type[BaseException], ...] = (Transient,)
    never_on: tuple[type[BaseException], ...] = (PreconditionFailed,)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout <= 0 or self.wait_initial < 0 or self.wait_max < 0:
            raise ValueError("timeout must be positive and waits non-negative")

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, self.retry_on) and not isinstance(error, self.never_on)


DEFAULT_POLICY = RetryPolicy()


class Retrier:
    """Runs a callable under a ``RetryPolicy``; ``sleep``, ``clock`` and ``rng`` are injectable for tests."""

    def __init__(
        self,
        policy: RetryPolicy = DEFAULT_POLICY,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def backoff(self, attempt: int, error: BaseException) -> float:
        """The wait after failed attempt ``attempt`` (1-based): full jitter, at least any Retry-After
        (a 429's, or a 503's: both tell when to come back)."""
        p = self.policy
        ceiling = min(p.wait_max, p.wait_initial * p.wait_exp_base ** (attempt - 1))
        jittered = self._rng.uniform(0.0, ceiling)
        retry_after = error.retry_after if isinstance(error, Transient) else None
        if retry_after is not None:
            return max(min(retry_after, p.max_retry_after), jittered)
        return jittered

    def call(self, fn: Callable[[], T], *, name: str = "call") -> T:
        """Call ``fn`` until it returns, a non-retryable error escapes, or attempts/time run out."""
        p = self.policy
        start = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as error:
                if not (retries_enabled() and p.is_retryable(error)) or attempt >= p.attempts:
                    raise
                delay = self.backoff(attempt, error)
                if self._clock() - start + delay > p.timeout:
                    log.warning("%s: giving up after %d attempt(s), retry budget spent", name, attempt)
                    raise
                log.warning(
                    "%s: attempt %d failed with %s (%s); retrying in %.2fs",
                    name, attempt, type(error).__name__, error, delay,
                )
                self._sleep(delay)


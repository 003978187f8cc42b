"""The per-hub identity-registry budget shared by every Function instance: a token bucket in Table storage.

Why a shared bucket rather than one consumer per hub (Service Bus sessions keyed by hub): the budget is
spent by *every* code path that calls a hub's registry — in-process group purges, scale-out batch workers,
single-device events, the audit's remediation — and those do not all come through one queue. A bucket in
the journal's storage account needs no new infrastructure, works on the queue and HTTP triggers alike, and
keeps the ``RateLimiter`` contract (``acquire(hub, ops) -> seconds to wait``) unchanged.

Layout: table ``<prefix>throttle``, one entity per hub: PartitionKey ``throttle``, RowKey = the lower-cased
host name; properties ``Tokens`` and ``Last`` (UTC epoch seconds), plus ``Rate``/``Burst`` for operators.
``acquire`` is one read and one ETag-conditional REPLACE (``IfNotModified``); a 412 means another instance
won the race, so it re-reads and recomputes, with a short jittered backoff, at most ``max_attempts`` times,
then raises ``PreconditionFailed`` (a ``Transient``: the host redelivers). The first caller creates the
entity (insert; "already exists" means someone else did: re-read).

The clock is UTC wall time (``time.time``), injectable: instances share no monotonic clock. A caller whose
clock lags never refills the bucket backwards (``Last`` only moves forward); a caller whose clock runs
ahead refills early by the skew — bounded by NTP-level skew, i.e. milliseconds. Not pinned by a documented
source: this skew tolerance is this app's reading of what is good enough against a per-minute budget.
Cost: two storage round trips per reservation (plus two per lost race); one bulk call of 100 devices
reserves once.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode

from shared.adapters import storage_connection
from shared.adapters.settings import Connection
from shared.adapters.storage_errors import with_retry
from shared.errors import Conflict, NotFound, PreconditionFailed

Clock = Callable[[], float]
Sleep = Callable[[float], None]
PARTITION = "throttle"
DEFAULT_OPS_PER_MINUTE = 100.0  # IoT Hub S1/S2, one unit
_HUB = re.compile(r"^[a-z0-9][a-z0-9.:-]{0,252}$")  # host name (with an optional port): safe as a RowKey
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 20}


class BudgetLike(Protocol):
    """Structural twin of ``unprovision.throttle.HubBudget`` (adapters do not import the service layer)."""

    @property
    def ops_per_minute(self) -> float: ...

    @property
    def burst(self) -> float: ...


@dataclass(frozen=True)
class Budget:
    ops_per_minute: float = DEFAULT_OPS_PER_MINUTE
    burst: float = DEFAULT_OPS_PER_MINUTE


def refill(tokens: float, last: float, now: float, budget: BudgetLike) -> tuple[float, float]:
    """Tokens after refilling from ``last`` to ``now`` (capped at the burst), and the new ``last``."""
    elapsed = max(0.0, now - last)
    return min(budget.burst, tokens + elapsed * budget.ops_per_minute / 60.0), max(last, now)


def hub_key(hub: str) -> str:
    """The RowKey of a hub: its lower-cased host name, validated before it reaches a query."""
    key = hub.strip().lower()
    if not _HUB.match(key):
        raise ValueError("hub must be a host name (letters, digits, '.', '-', optional ':port')")
    return key


class TableRateLimiter:
    """``RateLimiter`` over one table; safe to share between threads and between processes/instances."""

    def __init__(
        self, table: TableClient, *, budgets: Mapping[str, BudgetLike] | None = None,
        default: BudgetLike | None = None, clock: Clock = time.time, sleep: Sleep = time.sleep,
        max_attempts: int = 25, rng: random.Random | None = None,
    ) -> None:
        self._table = table
        self._budgets = {hub_key(h): b for h, b in (budgets or {}).items()}
        self._default = default or Budget()
        for budget in (self._default, *self._budgets.values()):
            if budget.ops_per_minute <= 0 or budget.burst <= 0:
                raise ValueError("a hub budget needs a positive rate and burst")
        self._clock, self._sleep, self._max_attempts = clock, sleep, max_attempts
        self._rng = rng or random.Random()

    @classmethod
    def from_connection_string(
        cls, connection_string: str | Connection, *, prefix: str = "", create_table: bool = True,
        credential: Any = None, **options: Any
    ) -> TableRateLimiter:
        """``connection_string``: a connection string or a resolved ``Connection`` of either form, so the
        shared budget works with identity-based storage too (``storage_connection``)."""
        service = storage_connection.table_service(connection_string, credential=credential,
                                                   **_CLIENT_OPTIONS)
        table = service.get_table_client(f"{prefix}throttle")
        if create_table:
            with_retry(partial(service.create_table_if_not_exists, table.table_name), "create throttle table")
        return cls(table, **options)

    def budget(self, hub: str) -> BudgetLike:
        return self._budgets.get(hub_key(hub), self._default)

    def acquire(self, hub: str, ops: int) -> float:
        """Reserve ``ops`` tokens (possibly into debt); returns the seconds to wait before the call."""
        if ops < 0:
            raise ValueError("ops must be >= 0")
        key, budget = hub_key(hub), self.budget(hub)
        for attempt in range(self._max_attempts):
            try:
                return self._try_reserve(key, budget, ops)
            except (PreconditionFailed, Conflict):
                self._sleep(self._rng.uniform(0.0, 0.005 * 2 ** min(attempt, 5)))
        raise PreconditionFailed(f"throttle bucket of {key} kept changing ({self._max_attempts} tries)")

    def _try_reserve(self, key: str, budget: BudgetLike, ops: int) -> float:
        """One read-compute-write; raises ``PreconditionFailed``/``Conflict`` when another writer won."""
        entity = self._read(key)
        now = self._clock()
        if entity is None:
            tokens, last = budget.burst, now
        else:
            tokens, last = refill(float(entity["Tokens"]), float(entity["Last"]), now, budget)
        tokens -= ops
        row = {"PartitionKey": PARTITION, "RowKey": key, "Tokens": float(tokens), "Last": float(last),
               "Rate": float(budget.ops_per_minute), "Burst": float(budget.burst)}
        if entity is None:
            with_retry(partial(self._table.create_entity, row), "create throttle bucket")
        else:
            with_retry(partial(self._table.update_entity, row, mode=UpdateMode.REPLACE,
                               etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified),
                       "update throttle bucket")
        return 0.0 if tokens >= 0 else -tokens * 60.0 / budget.ops_per_minute

    def _read(self, key: str) -> Any | None:
        try:
            return with_retry(partial(self._table.get_entity, PARTITION, key), "read throttle bucket")
        except NotFound:
            return None

    def reset(self, hub: str) -> None:
        """For operators and tests: forget a hub's bucket (the next caller starts full)."""
        try:
            with_retry(partial(self._table.delete_entity, PARTITION, hub_key(hub)), "delete throttle bucket")
        except NotFound:
            return

"""Reads what the planner needs for one event: the inventory snapshot, in as few round trips as possible.

Round trips for a single-device event (each line one port call; adapters may page, which this cannot see):
  1. ``dps.get_registration``  - assigned hub and hub device ID
  2. ``dps.get_enrollment``    - the device's own (or a blocking) individual enrollment
  3. ``dps.iter_groups``       - every enrollment group (≤100 X.509 + ≤100 symmetric: one or two pages);
                                 cached per process for ``GroupCache.ttl`` seconds, so 0 while warm
  4. ``registry.get``          - the identity in the hub named by ``assignedHub`` (skipped when there is none)
The journal read (history) is Table storage, not a service round trip. With the orchestrator's write side
(DPS step, one confirming re-read, hub step) a warm single-device event costs 6 service round trips, 7 cold.

Group events read the named group fresh (``get_group``) and the rest from the cache: a group that was just
disabled must not look enabled because of a cached list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import HubNotConfigured
from shared.model import EnrollmentGroup, HubDevice, InventorySnapshot, PastRevocation, RegistrationState
from shared.plan import StepOutcome
from shared.ports import DeviceRegistries, EventRecord, Journal, ProvisioningService

# Key in ``InventorySnapshot.extra`` naming an assigned hub this app has no credentials for.
HUB_NOT_CONFIGURED = "hubNotConfigured"
# Seconds; short, because a stale "no enabled group" could turn a disable into a delete.
DEFAULT_GROUP_TTL = 30.0

_DONE = frozenset({StepOutcome.DONE.value, StepOutcome.ALREADY_DONE.value})


@dataclass(frozen=True)
class EventKey:
    """The few event fields the service layer needs, whatever the event type's exact shape."""

    event_id: str
    event_type: str
    target: str  # registration ID, or enrollment group ID for group scope
    is_group: bool
    source: str = ""
    correlation_id: str = ""


def _field(event: Any, *names: str) -> Any:
    for name in names:
        value = event.get(name) if isinstance(event, Mapping) else getattr(event, name, None)
        if value is not None:
            return value
    return None


def event_key(event: Any) -> EventKey:
    """Extract an ``EventKey`` from a validated event (object or mapping).

    Not pinned by a documented source: the event type (``shared.events``) is written in parallel, so
    snake_case attributes and the camelCase wire names are both accepted. A group event is one naming a
    group ID and no registration ID.
    """
    event_id = _field(event, "event_id", "eventId")
    event_type = _field(event, "event_type", "type", "eventType")
    registration_id = _field(event, "registration_id", "registrationId", "device_id", "deviceId")
    group_id = _field(event, "group_id", "groupId", "enrollment_group_id", "enrollmentGroupId")
    target = registration_id or group_id
    if not event_id or not event_type or not target:
        raise ValueError("event lacks eventId, type or target (validate events before the service layer)")
    return EventKey(
        event_id=str(event_id),
        event_type=str(getattr(event_type, "value", event_type)),
        target=str(target),
        is_group=registration_id is None,
        source=str(_field(event, "source") or ""),
        correlation_id=str(_field(event, "correlation_id", "correlationId") or event_id),
    )


class GroupCache:
    """The enrollment-group list, kept for ``ttl`` seconds per process (thread-safe, injectable clock)."""

    def __init__(self, ttl: float = DEFAULT_GROUP_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._groups: tuple[EnrollmentGroup, ...] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def groups(self, dps: ProvisioningService) -> tuple[EnrollmentGroup, ...]:
        with self._lock:
            now = self._clock()
            if self._groups is None or now - self._at >= self.ttl:
                self._groups = tuple(dps.iter_groups())
                self._at = now
            return self._groups

    def invalidate(self) -> None:
        """Called after this process changes a group, so its next read is fresh."""
        with self._lock:
            self._groups = None


_default_cache = GroupCache()


def read_snapshot(
    event: Any,
    dps: ProvisioningService,
    registries: DeviceRegistries,
    journal: Journal,
    *,
    group_cache: GroupCache | None = None,
) -> InventorySnapshot:
    """The planner's snapshot for ``event``; absent things are absent, an unknown hub is noted in extra."""
    key = event_key(event)
    cache = group_cache or _default_cache
    history = read_history(journal, key.target)
    if key.is_group:
        return InventorySnapshot(groups=_groups_with_fresh(dps, cache, key.target), history=history)
    registration = dps.get_registration(key.target)
    enrollment = dps.get_enrollment(key.target)
    groups = cache.groups(dps)
    hub_device, extra = _read_hub_device(registration, registries)
    return InventorySnapshot(
        registration=registration, enrollment=enrollment, groups=groups, hub_device=hub_device,
        history=history, extra=extra,
    )


def _groups_with_fresh(
    dps: ProvisioningService, cache: GroupCache, group_id: str
) -> tuple[EnrollmentGroup, ...]:
    fresh = dps.get_group(group_id)
    others = tuple(g for g in cache.groups(dps) if g.group_id.lower() != group_id.lower())
    return (fresh, *others) if fresh is not None else others


def _read_hub_device(
    registration: RegistrationState | None, registries: DeviceRegistries
) -> tuple[HubDevice | None, dict[str, str]]:
    if registration is None or not registration.assigned_hub:
        return None, {}
    try:
        registry = registries.for_hub(registration.assigned_hub)
    except HubNotConfigured:
        return None, {HUB_NOT_CONFIGURED: registration.assigned_hub}
    return registry.get(registration.device_id or registration.registration_id), {}


def read_history(journal: Journal, target: str) -> tuple[PastRevocation, ...]:
    """Completed events on ``target``, newest first, each with the step kinds that took effect."""
    return tuple(_past(record) for record in journal.history(target) if record.status == "completed")


def _past(record: EventRecord) -> PastRevocation:
    """Only plan steps count (group fan-out keeps per-batch bookkeeping records at higher indices)."""
    limit = len((record.plan or {}).get("steps", ())) if record.plan else None
    latest: dict[int, str] = {}
    kinds: dict[int, str] = {}
    for step in record.steps:
        if limit is not None and step.index >= limit:
            continue
        latest[step.index] = step.outcome
        kinds[step.index] = step.kind
    applied = tuple(kinds[i] for i in sorted(latest) if latest[i] in _DONE)
    return PastRevocation(event_id=record.event_id, event_type=record.event_type, step_kinds=applied)

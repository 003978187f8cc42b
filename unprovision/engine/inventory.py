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
from collections.abc import Callable

from shared.errors import HubNotConfigured
from shared.events import LifecycleEvent
from shared.lifecycle import EventStatus
from shared.model import (
    HUB_IDENTITY_NOT_READ,
    EnrollmentGroup,
    HubDevice,
    InventorySnapshot,
    PastRevocation,
    RegistrationState,
)
from shared.plan import plan_from_dict
from shared.ports import DeviceRegistries, EventRecord, Journal, ProvisioningService
from shared.revocation_found import lifts_one_way
from unprovision.outcomes import done_indices

# Key in ``InventorySnapshot.extra`` naming an assigned hub this app has no credentials for.
HUB_NOT_CONFIGURED = "hubNotConfigured"
# Seconds; short, because a stale "no enabled group" could turn a disable into a delete.
DEFAULT_GROUP_TTL = 30.0


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


HubRead = Callable[[str], bool]  # hub -> read its identity now? (storm coalescing: unprovision.storm)


def read_snapshot(
    event: LifecycleEvent,
    dps: ProvisioningService,
    registries: DeviceRegistries,
    journal: Journal,
    *,
    group_cache: GroupCache,
    hub_read: HubRead | None = None,
) -> InventorySnapshot:
    """The planner's snapshot for ``event``; absent things are absent, an unknown hub is noted in extra, a
    hub identity ``hub_read`` said not to read is noted too (``HUB_IDENTITY_NOT_READ``)."""
    history = read_history(journal, event.target)
    if event.is_group:
        return InventorySnapshot(groups=_groups_with_fresh(dps, group_cache, event.target), history=history)
    registration = dps.get_registration(event.target)
    enrollment = dps.get_enrollment(event.target)
    cache = group_cache
    groups = cache.groups(dps)
    hub_device, extra = _read_hub_device(registration, registries, hub_read)
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
    registration: RegistrationState | None, registries: DeviceRegistries, hub_read: HubRead | None
) -> tuple[HubDevice | None, dict[str, str]]:
    if registration is None or not registration.assigned_hub:
        return None, {}
    try:
        registry = registries.for_hub(registration.assigned_hub)
    except HubNotConfigured:
        return None, {HUB_NOT_CONFIGURED: registration.assigned_hub}
    if hub_read is not None and not hub_read(registry.hub):
        return None, {HUB_IDENTITY_NOT_READ: registry.hub}
    return registry.get(registration.device_id or registration.registration_id), {}


def read_history(journal: Journal, target: str) -> tuple[PastRevocation, ...]:
    """Every event begun on ``target``, newest first, with the step kinds that took effect and its status.

    Not only completed ones: a revocation that failed part-way (its DPS step done, its hub step not) or is
    still running has changed the device, and a later ``found`` must see it (docs/reliability.md)."""
    return tuple(_past(record) for record in journal.history(target)
                 if record.status != EventStatus.REJECTED)


def _past(record: EventRecord) -> PastRevocation:
    plan = plan_from_dict(record.plan) if record.plan else None
    done = done_indices(record, plan)
    applied = tuple(step.kind for step in record.steps if step.index in done)
    return PastRevocation(event_id=record.event_id, event_type=record.event_type, step_kinds=applied,
                          status=record.status, forced=plan is not None and lifts_one_way(plan))

"""Hand-written fakes of the ports in ``shared.ports``: real in-memory behaviour, call logs, fault injection.

They follow the documented service semantics the adapters promise: DPS IDs are case-insensitive, hub device
IDs case-sensitive, mutations are idempotent and say DONE or ALREADY_DONE, bulk registry calls take at most
100 devices (413 ``TooManyDevices`` otherwise, surfaced as ``Permanent``). Iterators are generators, so tests
can see how far a consumer has pulled.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from shared.errors import Conflict, HubNotConfigured, NotFound, Permanent, Throttled, Transient
from shared.model import (
    AttestationType,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import StepOutcome
from shared.ports import AuditLeaseRecord, BulkResult, Change

BULK_LIMIT = 100


class FakeClock:
    """A clock tests move by hand; ``sleep`` advances it instead of waiting (thread-safe)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)


class _Faults:
    """Call counting plus 'raise this on the Nth call of that operation' (each fault fires once)."""

    def __init__(self, log: list[tuple[str, Any]] | None = None) -> None:
        self.calls: Counter[str] = Counter()
        # Pass one list to several fakes to see the order of calls across them.
        self.log: list[tuple[str, Any]] = log if log is not None else []
        self._plans: dict[tuple[str, int], Exception] = {}
        self._lock = threading.Lock()

    def fail_on(self, op: str, nth: int = 1, exc: Exception | None = None) -> None:
        self._plans[(op, nth)] = exc or Transient(f"injected fault on {op} call {nth}")

    def hit(self, op: str, arg: Any = None) -> None:
        with self._lock:
            self.calls[op] += 1
            self.log.append((op, arg))
            exc = self._plans.pop((op, self.calls[op]), None)
        if exc is not None:
            raise exc


MUTATIONS = frozenset(
    {"set_enrollment_status", "delete_enrollment", "create_blocking_enrollment", "set_group_status",
     "delete_group", "disable", "enable", "delete", "bulk_disable", "bulk_delete"}
)


class FakeProvisioningService(_Faults):
    """DPS service API in memory: enrollments, groups, registration records."""

    def __init__(self, log: list[tuple[str, Any]] | None = None) -> None:
        super().__init__(log)
        self.enrollments: dict[str, IndividualEnrollment] = {}
        self.groups: dict[str, EnrollmentGroup] = {}
        self.registrations: dict[str, RegistrationState] = {}
        self.pulled: Counter[str] = Counter()  # registration records yielded per group, for laziness checks
        self._etag = 0

    # -- seeding -------------------------------------------------------------------------------------
    def add_enrollment(self, registration_id: str, *, attestation: AttestationType = AttestationType.X509,
                       status: ProvisioningStatus = ProvisioningStatus.ENABLED, device_id: str | None = None,
                       blocking_marker: str | None = None) -> IndividualEnrollment:
        e = IndividualEnrollment(registration_id, attestation, status, device_id, self._next_etag(),
                                 blocking_marker=blocking_marker)
        self.enrollments[registration_id.lower()] = e
        return e

    def add_group(self, group_id: str, *, attestation: AttestationType = AttestationType.X509,
                  status: ProvisioningStatus = ProvisioningStatus.ENABLED) -> EnrollmentGroup:
        g = EnrollmentGroup(group_id, attestation, status, etag=self._next_etag())
        self.groups[group_id.lower()] = g
        return g

    def add_registration(self, registration_id: str, hub: str | None, *, device_id: str | None = None,
                         group_id: str | None = None, status: str = "assigned") -> RegistrationState:
        r = RegistrationState(registration_id, device_id or registration_id, hub, status, self._next_etag(),
                              enrollment_group_id=group_id)
        self.registrations[registration_id.lower()] = r
        return r

    def mutation_count(self) -> int:
        return sum(n for op, n in self.calls.items() if op in MUTATIONS)

    def _next_etag(self) -> str:
        self._etag += 1
        return f'"{self._etag}"'

    # -- reads ---------------------------------------------------------------------------------------
    def get_registration(self, registration_id: str) -> RegistrationState | None:
        self.hit("get_registration", registration_id)
        return self.registrations.get(registration_id.lower())

    def get_enrollment(self, registration_id: str) -> IndividualEnrollment | None:
        self.hit("get_enrollment", registration_id)
        return self.enrollments.get(registration_id.lower())

    def get_group(self, group_id: str) -> EnrollmentGroup | None:
        self.hit("get_group", group_id)
        return self.groups.get(group_id.lower())

    def iter_groups(self) -> Iterator[EnrollmentGroup]:
        self.hit("iter_groups")
        yield from list(self.groups.values())

    def iter_enrollments(self, page_size: int = 100) -> Iterator[IndividualEnrollment]:
        self.hit("iter_enrollments")
        yield from list(self.enrollments.values())

    def iter_group_registrations(self, group_id: str, page_size: int = 100) -> Iterator[RegistrationState]:
        key = group_id.lower()
        members = [r for r in self.registrations.values() if (r.enrollment_group_id or "").lower() == key]
        for start in range(0, len(members), page_size):
            self.hit("iter_group_registrations.page", (group_id, start))
            for record in members[start:start + page_size]:
                self.pulled[key] += 1
                yield record

    # -- mutations -----------------------------------------------------------------------------------
    def set_enrollment_status(self, registration_id: str, status: ProvisioningStatus) -> Change:
        self.hit("set_enrollment_status", registration_id)
        current = self.enrollments.get(registration_id.lower())
        if current is None:
            raise NotFound(f"enrollment {registration_id} not found")
        if current.status == status:
            return Change(StepOutcome.ALREADY_DONE, current.status, status)
        self.enrollments[registration_id.lower()] = replace(current, status=status, etag=self._next_etag())
        return Change(StepOutcome.DONE, current.status, status)

    def delete_enrollment(self, registration_id: str) -> Change:
        self.hit("delete_enrollment", registration_id)
        current = self.enrollments.pop(registration_id.lower(), None)
        if current is None:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")
        return Change(StepOutcome.DONE, current.status, "deleted")

    def create_blocking_enrollment(self, registration_id: str, *, certificate_pem: str | None,
                                   marker: str) -> Change:
        self.hit("create_blocking_enrollment", registration_id)
        current = self.enrollments.get(registration_id.lower())
        if current is not None:
            if current.status == ProvisioningStatus.DISABLED:
                return Change(StepOutcome.ALREADY_DONE, "disabled", "disabled")
            raise Conflict(f"an enabled enrollment {registration_id} exists")
        kind = AttestationType.X509 if certificate_pem else AttestationType.SYMMETRIC_KEY
        self.add_enrollment(registration_id, attestation=kind, status=ProvisioningStatus.DISABLED,
                            blocking_marker=marker)
        return Change(StepOutcome.DONE, "absent", "disabled")

    def set_group_status(self, group_id: str, status: ProvisioningStatus) -> Change:
        self.hit("set_group_status", group_id)
        current = self.groups.get(group_id.lower())
        if current is None:
            raise NotFound(f"group {group_id} not found")
        if current.status == status:
            return Change(StepOutcome.ALREADY_DONE, current.status, status)
        self.groups[group_id.lower()] = replace(current, status=status, etag=self._next_etag())
        return Change(StepOutcome.DONE, current.status, status)

    def delete_group(self, group_id: str) -> Change:
        self.hit("delete_group", group_id)
        current = self.groups.pop(group_id.lower(), None)
        if current is None:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")
        return Change(StepOutcome.DONE, current.status, "deleted")


class FakeDeviceRegistry(_Faults):
    """One hub's identity registry.

    Optional throttle: ``ops_per_minute`` in a sliding 60 s window (per device for bulk calls), raising
    ``Throttled`` when exceeded; optional real ``call_delay`` makes concurrency visible.
    """

    def __init__(self, hub: str, *, ops_per_minute: float | None = None,
                 clock: Callable[[], float] = time.monotonic, call_delay: float = 0.0,
                 log: list[tuple[str, Any]] | None = None) -> None:
        super().__init__(log)
        self._hub = hub
        self.devices: dict[str, HubDevice] = {}
        self.bulk_calls: list[tuple[str, int, float]] = []  # (op, devices, clock at call)
        self.max_in_flight = 0
        self.throttled = 0  # calls refused with 429 by the simulated throttle
        self.on_bulk: Callable[[str, int], None] | None = None  # test hook, called as a bulk call starts
        self._in_flight = 0
        self._ops_per_minute = ops_per_minute
        self._window: list[tuple[float, int]] = []
        self._clock = clock
        self._delay = call_delay
        self._state = threading.Lock()

    @property
    def hub(self) -> str:
        return self._hub

    def add_device(self, device_id: str, status: HubDeviceStatus = HubDeviceStatus.ENABLED) -> HubDevice:
        d = HubDevice(self._hub, device_id, status, etag='"1"')
        self.devices[device_id] = d
        return d

    def mutation_count(self) -> int:
        return sum(n for op, n in self.calls.items() if op in MUTATIONS)

    def get(self, device_id: str) -> HubDevice | None:
        self._spend("get", device_id, 1)
        return self.devices.get(device_id)

    def disable(self, device_id: str, reason: str | None = None) -> Change:
        self._spend("disable", device_id, 1)
        return self._set(device_id, HubDeviceStatus.DISABLED, reason)

    def enable(self, device_id: str) -> Change:
        self._spend("enable", device_id, 1)
        return self._set(device_id, HubDeviceStatus.ENABLED, None)

    def delete(self, device_id: str) -> Change:
        self._spend("delete", device_id, 1)
        with self._state:
            current = self.devices.pop(device_id, None)
        if current is None:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")
        return Change(StepOutcome.DONE, current.status, "deleted")

    def bulk_disable(self, device_ids: Sequence[str], reason: str | Mapping[str, str] | None = None, *,
                     spend: Callable[[int], object] | None = None) -> BulkResult:
        return self._bulk("bulk_disable", device_ids, partial(self._bulk_disable_one, reason=reason))

    def bulk_delete(self, device_ids: Sequence[str]) -> BulkResult:
        return self._bulk("bulk_delete", device_ids, self._bulk_delete_one)

    def iter_devices(self, page_size: int = 100) -> Iterator[HubDevice]:
        self._spend("iter_devices", None, 1)
        yield from list(self.devices.values())

    # -- internals -----------------------------------------------------------------------------------
    def _set(self, device_id: str, status: HubDeviceStatus, reason: str | None) -> Change:
        with self._state:
            current = self.devices.get(device_id)
            if current is None:
                raise NotFound(f"device {device_id} not found in {self._hub}")
            if current.status == status:
                return Change(StepOutcome.ALREADY_DONE, current.status, status)
            self.devices[device_id] = replace(current, status=status, status_reason=reason)
        return Change(StepOutcome.DONE, current.status, status)

    def _bulk_disable_one(self, device_id: str, *, reason: str | Mapping[str, str] | None) -> str:
        current = self.devices.get(device_id)
        if current is None:
            return "DeviceNotFound"
        if current.status == HubDeviceStatus.DISABLED:
            return "unchanged"
        own = reason.get(device_id) if isinstance(reason, Mapping) else reason
        self.devices[device_id] = replace(current, status=HubDeviceStatus.DISABLED, status_reason=own)
        return "changed"

    def _bulk_delete_one(self, device_id: str) -> str:
        return "changed" if self.devices.pop(device_id, None) is not None else "unchanged"

    def _bulk(self, op: str, device_ids: Sequence[str], one: Callable[[str], str]) -> BulkResult:
        if len(device_ids) > BULK_LIMIT:
            raise Permanent(f"413002 TooManyDevices: {len(device_ids)} devices in one call")
        if self.on_bulk is not None:
            self.on_bulk(op, len(device_ids))
        self._spend(op, len(device_ids), len(device_ids))
        self.bulk_calls.append((op, len(device_ids), self._clock()))
        changed: list[str] = []
        unchanged: list[str] = []
        failed: dict[str, str] = {}
        with self._state:
            for device_id in device_ids:
                verdict = one(device_id)
                if verdict == "changed":
                    changed.append(device_id)
                elif verdict == "unchanged":
                    unchanged.append(device_id)
                else:
                    failed[device_id] = verdict
        return BulkResult(tuple(changed), tuple(unchanged), failed)

    def _spend(self, op: str, arg: Any, ops: int) -> None:
        self.hit(op, arg)
        with self._state:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            self._check_throttle(ops)
            if self._delay:
                time.sleep(self._delay)
        finally:
            with self._state:
                self._in_flight -= 1

    def _check_throttle(self, ops: int) -> None:
        if self._ops_per_minute is None:
            return
        with self._state:
            now = self._clock()
            self._window = [(t, n) for t, n in self._window if now - t < 60.0]
            if sum(n for _, n in self._window) + ops > self._ops_per_minute:
                self.throttled += 1
                raise Throttled(f"429 ThrottlingException on {self._hub}", retry_after=10.0)
            self._window.append((now, ops))


class FakeDeviceRegistries:
    """Registries by hub host name (case-insensitive); an unknown hub raises ``HubNotConfigured``."""

    def __init__(self, registries: Iterable[FakeDeviceRegistry] = ()) -> None:
        self._by_hub = {r.hub.lower(): r for r in registries}

    def add(self, registry: FakeDeviceRegistry) -> FakeDeviceRegistry:
        self._by_hub[registry.hub.lower()] = registry
        return registry

    def for_hub(self, hub: str) -> FakeDeviceRegistry:
        registry = self._by_hub.get(hub.lower())
        if registry is None:
            raise HubNotConfigured(f"no credentials for hub {hub}")
        return registry

    def hubs(self) -> Iterable[str]:
        return [r.hub for r in self._by_hub.values()]

    def mutation_count(self) -> int:
        return sum(r.mutation_count() for r in self._by_hub.values())


@dataclass
class RecordingNotifier:
    """Keeps every published outcome; ``fail_with`` makes ``publish`` raise (e.g. a broker outage)."""

    published: list[Mapping[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None

    def publish(self, outcome: Mapping[str, Any]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.published.append(dict(outcome))


@dataclass
class RecordingWorkQueue:
    """``WorkQueue`` that keeps messages in order; tests drain it into ``apply_batch``."""

    messages: list[Mapping[str, Any]] = field(default_factory=list)
    on_send: Callable[[Mapping[str, Any]], None] | None = None
    delays: list[float] = field(default_factory=list)  # per message, in order

    def send(self, message: Mapping[str, Any], *, delay: float = 0.0) -> None:
        if self.on_send is not None:
            self.on_send(message)
        self.messages.append(dict(message))
        self.delays.append(delay)



class InMemoryAuditLease:
    """``AuditLease`` in memory: one holder, taken when free, expired or already the caller's."""

    def __init__(self) -> None:
        self.held: AuditLeaseRecord | None = None

    def claim(self, record: AuditLeaseRecord, now: str) -> AuditLeaseRecord:
        held = self.held
        if held is not None and held.audit_id != record.audit_id and _later(held.expires_at, now):
            return held
        self.held = record
        return record

    def release(self, audit_id: str) -> None:
        if self.held is not None and self.held.audit_id == audit_id:
            self.held = None

    def current(self) -> AuditLeaseRecord | None:
        return self.held


def _later(stamp: str, now: str) -> bool:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) > datetime.fromisoformat(
        now.replace("Z", "+00:00"))

"""Ports: what the service layer needs from the outside world, in the domain's words.

Adapters in ``shared.adapters`` implement these over the Azure SDKs; tests use hand-written fakes that
implement the same protocols. Mutations are idempotent and report whether they changed anything.
Errors are those of ``shared.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.lifecycle import BatchState, EmissionState
from shared.model import (
    EnrollmentGroup,
    HubDevice,
    IndividualEnrollment,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import StepOutcome


@dataclass(frozen=True)
class Change:
    """The effect of one mutation: ``before``/``after`` are short state descriptions for the journal."""

    outcome: StepOutcome
    before: str | None = None
    after: str | None = None


@dataclass(frozen=True)
class BulkResult:
    """The effect of one bulk registry call: device IDs changed, already in the wanted state, or failed."""

    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)  # device ID -> error code


class ProvisioningService(Protocol):
    """The Device Provisioning Service, seen from its service API."""

    def get_registration(self, registration_id: str) -> RegistrationState | None: ...

    def get_enrollment(self, registration_id: str) -> IndividualEnrollment | None: ...

    def get_group(self, group_id: str) -> EnrollmentGroup | None: ...

    def iter_groups(self) -> Iterator[EnrollmentGroup]: ...

    def iter_enrollments(self, page_size: int = 100) -> Iterator[IndividualEnrollment]: ...

    def iter_group_registrations(self, group_id: str, page_size: int = 100) -> Iterator[RegistrationState]:
        """Stream the registration records of a group, page by page."""
        ...

    def set_enrollment_status(self, registration_id: str, status: ProvisioningStatus) -> Change: ...

    def delete_enrollment(self, registration_id: str) -> Change: ...

    def create_blocking_enrollment(
        self, registration_id: str, *, certificate_pem: str | None, marker: str
    ) -> Change:
        """Create a disabled individual enrollment that shadows any group for this registration ID."""
        ...

    def set_group_status(self, group_id: str, status: ProvisioningStatus) -> Change: ...

    def delete_group(self, group_id: str) -> Change: ...


class DeviceRegistry(Protocol):
    """The identity registry of one IoT hub."""

    @property
    def hub(self) -> str: ...

    def get(self, device_id: str) -> HubDevice | None: ...

    def disable(self, device_id: str, reason: str | None = None) -> Change: ...

    def enable(self, device_id: str) -> Change: ...

    def delete(self, device_id: str) -> Change: ...

    def bulk_disable(self, device_ids: Sequence[str], reason: str | Mapping[str, str] | None = None, *,
                     spend: Callable[[int], object] | None = None) -> BulkResult:
        """At most 100 devices a call (the service's limit). ``reason``: one statusReason for every device,
        or one per device ID (the bulk API takes a whole identity per device, so a call can carry each
        device's own, e.g. each storm event's). Reads the call must make beyond the write
        (e.g. a GET per symmetric-key device for its keys) are paid first through ``spend(n)``, so a
        caller's registry budget covers every operation before it is spent."""
        ...

    def bulk_delete(self, device_ids: Sequence[str]) -> BulkResult: ...

    def iter_devices(self, page_size: int = 100) -> Iterator[HubDevice]: ...


class DeviceRegistries(Protocol):
    """Finds the registry of a hub by host name; raises ``HubNotConfigured`` for an unknown hub."""

    def for_hub(self, hub: str) -> DeviceRegistry: ...

    def hubs(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class StepRecord:
    index: int
    kind: str
    target: str
    outcome: str  # StepOutcome value
    hub: str | None = None
    before: str | None = None
    after: str | None = None
    error: str | None = None
    at: str | None = None  # RFC 3339, set by the journal


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    event_type: str
    target: str
    source: str
    # received | in_progress | completed | failed | refused | rejected
    status: str
    correlation_id: str
    plan: Mapping[str, Any] | None = None
    steps: tuple[StepRecord, ...] = ()
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    # sha256 of the validated event (``unprovision.engine.fingerprint``); None in rows written before it
    # existed
    fingerprint: str | None = None


@dataclass(frozen=True)
class Tally:
    """Device counts of group work: changed, already in the wanted state, failed."""

    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.changed + other.changed, self.unchanged + other.unchanged,
                     self.failed + other.failed)

    @property
    def done(self) -> int:
        return self.changed + self.unchanged + self.failed

    def summary(self) -> str:
        return f"changed={self.changed} unchanged={self.unchanged} failed={self.failed}"


@dataclass(frozen=True)
class BatchRecord:
    """One scale-out batch of a group step: which devices of which hub, and what became of them.

    Recorded (``EMITTED``) before its work message is sent; the message names only (event, step, run,
    number), so a handler applies exactly the device set the event emitted and nothing a message claims.
    """

    step_index: int
    run: int
    number: int
    hub: str
    action: str  # "disable" | "delete"
    device_ids: tuple[str, ...]
    state: BatchState = BatchState.EMITTED
    tally: Tally = field(default_factory=Tally)
    error: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class EmissionRecord:
    """One emission run of a group step: ``batches`` is known once every batch is recorded."""

    step_index: int
    run: int
    state: EmissionState
    batches: int = 0
    at: str | None = None


@dataclass(frozen=True)
class RejectionRecord:
    """A message that failed validation, as it came, with its field errors.

    ``body`` is kept up to a limit set by the journal; ``truncated`` says it was cut. ``event_id`` is the
    eventId the message claimed, if one could be read (never turned into an event record).
    """

    rejection_id: str
    body: str
    errors: tuple[Mapping[str, str], ...]
    event_id: str | None
    at: str  # RFC 3339, set by the journal
    truncated: bool = False


class Journal(Protocol):
    """Append-only record of every event and step; makes redelivery harmless and lets `found` undo `lost`."""

    def begin(
        self, event_id: str, *, event_type: str, target: str, source: str, correlation_id: str,
        plan: Mapping[str, Any], fingerprint: str | None = None,
    ) -> EventRecord:
        """Record the event and its plan; for a known event, return the stored record unchanged (the caller
        compares fingerprints: the same eventId with another body is a conflict, never the first event)."""
        ...

    def get(self, event_id: str) -> EventRecord | None: ...

    def record_step(self, event_id: str, step: StepRecord) -> None: ...

    def finish(self, event_id: str, status: str, error: str | None = None) -> None:
        """Move the event to ``status``; ``shared.lifecycle.check_transition`` decides whether it may
        (``IllegalTransition`` otherwise). ``finish(id, "in_progress")`` resumes a failed event."""
        ...

    def claim_target(self, target: str, holder: str, ttl_seconds: float) -> bool:
        """Hold the per-target lease (case-insensitive target) for ``ttl_seconds``; True when ``holder`` now
        holds it (also when it already did: the lease is extended), False while another live holder has it.
        Atomic across processes: events on one device are applied one at a time."""
        ...

    def release_target(self, target: str, holder: str) -> None:
        """Give the lease up if ``holder`` still holds it (an expired lease taken over is left alone)."""
        ...

    def start_emission(self, event_id: str, step_index: int, run: int) -> bool:
        """Claim emission run ``run`` of a group step; True for exactly one caller."""
        ...

    def record_batch(self, event_id: str, batch: BatchRecord) -> None:
        """Keep a batch (state ``EMITTED``) of the emission run that the caller claimed."""
        ...

    def end_emission(self, event_id: str, step_index: int, run: int, batches: int) -> None:
        """Every batch of the run is recorded: ``batches`` of them."""
        ...

    def latest_emission(self, event_id: str, step_index: int) -> EmissionRecord | None: ...

    def batches(self, event_id: str, step_index: int, run: int) -> tuple[BatchRecord, ...]:
        """The batches of one run, by number."""
        ...

    def settle_batch(self, event_id: str, batch: BatchRecord) -> bool:
        """Store ``batch`` (same step, run, number) if ``shared.lifecycle.batch_may_become`` allows its state
        from the stored one; False when not (e.g. already applied by a duplicate delivery)."""
        ...

    def record_rejection(self, body: str, errors: Sequence[Mapping[str, str]], event_id: str | None) -> str:
        """Keep a message that failed validation with its field errors; returns the rejection's id."""
        ...

    def get_rejection(self, rejection_id: str) -> RejectionRecord | None:
        """The rejection ``record_rejection`` returned this id for; None if unknown (or not an id)."""
        ...

    def iter_rejections(self, event_id: str | None = None) -> Iterator[RejectionRecord]:
        """Every rejection, or those that claimed ``event_id``; ordered by rejection id, streamed."""
        ...

    def history(self, target: str) -> Iterator[EventRecord]:
        """Every event begun on a registration or group ID (case-insensitive), whatever its status, newest
        first: a revocation that failed part-way or is still running counts for what it changed."""
        ...

    def iter_events(self, status: str | None = None) -> Iterator[EventRecord]:
        """Event headers only (``steps`` is empty; ``get`` has them), optionally of one status."""
        ...


class Notifier(Protocol):
    """Tells the reporting system how an event ended."""

    def publish(self, outcome: Mapping[str, Any]) -> None: ...


class WorkQueue(Protocol):
    """Where group fan-out work goes in scale-out mode: one message per batch of ≤100 devices of one hub.

    Message keys: eventId, groupId, hub, action, deviceIds (≤100), batch, run, stepIndex. A queue-triggered
    function consumes each with ``unprovision.groupwork.apply_batch``. Delivery is at least once.
    """

    def send(self, message: Mapping[str, Any], *, delay: float = 0.0) -> None:
        """Queue ``message``; with ``delay``, it stays invisible that many seconds (rounded up) first."""
        ...


class RateLimiter(Protocol):
    """A token bucket per hub, shared by every caller that spends that hub's identity-registry budget.

    ``acquire`` reserves ``ops`` tokens at once and returns the seconds the caller must wait before making the
    call (0.0 when the budget allows it now). Reservations may run the bucket into debt, so later callers wait
    longer: that keeps the contract a single atomic read-modify-write, which a store with optimistic
    concurrency (e.g. a Table entity with an ETag) can implement across Function instances.
    """

    def acquire(self, hub: str, ops: int) -> float: ...


@dataclass(frozen=True)
class PendingHubStep:
    """One event's hub step waiting in its hub's pending set (storm coalescing, ``unprovision.storm``).

    Keyed by (hub, device ID): at most one per device per hub. ``claim`` is None while the step waits and
    names the flush that took it once a flush did (only waiting steps may be taken by anyone else)."""

    hub: str
    device_id: str  # case-sensitive, as IoT Hub device IDs are
    event_id: str
    step_index: int
    action: str  # "disable" | "delete"
    reason: str | None = None  # the identity's statusReason for a disable
    claim: str | None = None
    etag: str | None = None  # set by the store; the conditional writes below need it


class PendingHubSteps(Protocol):
    """Per-hub sets of hub steps waiting to be applied together, in the journal's storage account.

    Every change is conditional on the entry's ``etag``: a flush and an event settling an earlier event's
    step never both take the same entry."""

    def add(self, step: PendingHubStep) -> PendingHubStep:
        """Insert ``step`` (unclaimed); when the device already has an entry, return that one unchanged."""
        ...

    def get(self, hub: str, device_id: str) -> PendingHubStep | None: ...

    def has_waiting(self, hub: str) -> bool:
        """Whether any unclaimed entry waits in ``hub``'s set."""
        ...

    def entries(self, hub: str) -> Iterator[PendingHubStep]:
        """Every entry of ``hub``'s set, claimed or not, streamed."""
        ...

    def claim(self, steps: Sequence[PendingHubStep], claim: str) -> list[PendingHubStep]:
        """Mark each step as taken by ``claim`` if it did not change since read; the ones now claimed
        (with their new etags). A step changed or removed meanwhile is left out."""
        ...

    def remove(self, steps: Sequence[PendingHubStep]) -> int:
        """Delete each step if it did not change since read; how many were deleted."""
        ...

    def request_flush(self, hub: str, stale_after: float) -> bool:
        """Note that ``hub``'s set wants a flush; True when the caller must send the flush message: no
        request was standing, or the standing one is older than ``stale_after`` seconds (its sender may
        have died before sending). Atomic: of callers racing on a fresh request exactly one gets True."""
        ...

    def clear_flush_request(self, hub: str) -> None:
        """Drop ``hub``'s standing request (a flush does, before it reads the set: a step added after this
        asks for a message of its own)."""
        ...


# --- audit (appended by the audit engineer) ---------------------------------------------------------------


@dataclass(frozen=True)
class PoisonMessage:
    """A message the host gave up on; ``body`` is shortened by the adapter (an event, never a secret)."""

    message_id: str
    dequeue_count: int
    inserted_at: str | None = None  # RFC 3339
    body: str = ""


class PoisonQueue(Protocol):
    """The lifecycle queue's poison queue, read-only: the audit counts and samples what is waiting there."""

    @property
    def name(self) -> str: ...

    def count(self) -> int:
        """Approximate number of messages waiting (the service's own count)."""
        ...

    def peek(self, n: int = 5) -> Sequence[PoisonMessage]:
        """Up to ``n`` (at most 32) messages, without hiding or dequeuing them."""
        ...


@dataclass(frozen=True)
class SuppressionRecord:
    """An operator's "known, leave it": ``check`` + ``resource`` until ``until`` (RFC 3339), with a reason."""

    check: str
    resource: str
    until: str
    reason: str
    created_at: str | None = None


class AuditReportStore(Protocol):
    """History of audit reports, each a JSON document (``shared.audit.AuditReport.to_json``)."""

    def save(self, report: Mapping[str, Any]) -> None: ...

    def get(self, report_id: str) -> Mapping[str, Any] | None: ...

    def iter_reports(self, limit: int | None = None) -> Iterator[Mapping[str, Any]]:
        """Newest first."""
        ...


class SuppressionStore(Protocol):
    """Suppressions keyed by (check, resource); the resource compares case-insensitively."""

    def put(self, suppression: SuppressionRecord) -> None: ...

    def delete(self, check: str, resource: str) -> bool: ...

    def iter_all(self) -> Iterator[SuppressionRecord]: ...


@dataclass(frozen=True)
class AuditLeaseRecord:
    """The audit that holds the one-at-a-time lease: its id, state (``queued``/``running``) and expiry."""

    audit_id: str
    state: str
    remediate: bool
    since: str  # RFC 3339: when it was requested (or started running)
    expires_at: str  # RFC 3339: after this a crashed audit no longer blocks the next


class AuditLease(Protocol):
    """One audit at a time across Function instances: a single lease row (atomic compare-and-swap)."""

    def claim(self, record: AuditLeaseRecord, now: str) -> AuditLeaseRecord:
        """Take the lease for ``record`` when it is free, expired or already held by the same audit id (then
        it is replaced: state and expiry move on). Returns the holder afterwards: ``record`` when claimed,
        else the audit that still holds it."""
        ...

    def release(self, audit_id: str) -> None:
        """Free the lease if ``audit_id`` still holds it."""
        ...

    def current(self) -> AuditLeaseRecord | None:
        """The holder as stored (possibly expired), or None."""
        ...

"""One pass over a stored plan: DPS first, confirm, then the hubs, every step journaled before the next.

Guarantees (docs/engine.md):
* crash safety: each step's outcome is in the journal before the next step starts; a redelivered event
  resumes with the stored plan, skipping the steps ``outcomes.done_indices`` names;
* DPS before hub, and the DPS changes are re-read before any hub step: a mismatch fails the event there;
* ``Transient`` is recorded and re-raised (the host redelivers, the redelivery resumes); ``Permanent``,
  including ``HubNotConfigured``, is recorded and the event finishes as failed;
* the event's status only moves as ``shared.lifecycle.TRANSITIONS`` allows (the journal enforces it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from shared.errors import HubNotConfigured, NotFound, Permanent, Throttled, Transient, UnprovisionError
from shared.lifecycle import EventStatus, is_finished
from shared.logfields import log_fields
from shared.model import ProvisioningStatus
from shared.plan import Plan, Service, Step, StepKind, StepOutcome
from shared.ports import (
    Change,
    DeviceRegistries,
    DeviceRegistry,
    EventRecord,
    Journal,
    Notifier,
    ProvisioningService,
    StepRecord,
    WorkQueue,
)
from unprovision.engine.inventory import GroupCache
from unprovision.group import scaleout
from unprovision.group.batches import ACTIONS
from unprovision.group.inprocess import GroupWork, ProgressFn, purge_group
from unprovision.outcomes import Outcome, done_indices, plan_steps
from unprovision.storm import coalesce
from unprovision.storm.coalesce import Storm

log = logging.getLogger(__name__)

_GROUP_DPS = frozenset({StepKind.GROUP_DISABLED, StepKind.GROUP_DELETED})


class ConfirmFailed(Permanent):
    """A DPS change did not show on re-read: never go on to the hub on a revocation DPS does not enforce."""


@dataclass(frozen=True)
class Context:
    """What a run needs besides the plan; built by ``core.Engine`` for each event."""

    event_id: str
    dps: ProvisioningService
    registries: DeviceRegistries
    journal: Journal
    notifier: Notifier | None
    group_cache: GroupCache
    group_work: GroupWork
    work_queue: WorkQueue | None  # set: group steps scale out through it
    progress: ProgressFn | None = None
    correlation_id: str | None = None  # for the logs' correlationId (docs/operations.md)
    storm: Storm | None = None  # set: a single device's hub step may join its hub's pending set


class Run:
    """One pass over a plan; holds what every step needs so the step functions stay short."""

    def __init__(self, plan: Plan, context: Context) -> None:
        self.plan, self.c = plan, context
        self.warnings: list[str] = list(plan.warnings)
        self.started_from: EventRecord | None = None  # the journal's record when this pass began

    def execute(self) -> Outcome:
        if self.plan.refused:
            return self._finish(EventStatus.REFUSED, self.plan.refusal)
        self.started_from = self.c.journal.get(self.c.event_id)
        done = done_indices(self.started_from, self.plan)
        indexed = list(enumerate(self.plan.steps))
        dps_steps = [(i, s) for i, s in indexed if s.service is Service.DPS]
        hub_steps = [(i, s) for i, s in indexed if s.service is Service.HUB]
        try:
            for i, step in dps_steps:
                if i not in done:
                    self._run_step(i, step, partial(self._dps_step, step))
            if dps_steps:
                self._confirm(dps_steps)
            for i, step in hub_steps:
                if i in done:
                    continue
                if step.kind in ACTIONS and self._scales_out(i, hub_steps):
                    return self._scale_out(i, step)
                if self._waits_in_set(i, step, last=hub_steps[-1][0] == i):
                    return self.pending()
                self._run_step(i, step, partial(self._hub_step, step))
        except Permanent as exc:
            return self._finish(EventStatus.FAILED, str(exc))
        return self._finish(EventStatus.COMPLETED, None)

    # -- steps -----------------------------------------------------------------------------------------
    def _run_step(self, index: int, step: Step, action: Callable[[], Change]) -> None:
        """Apply one step and record its outcome; a failure is recorded before it propagates."""
        try:
            change = action()
        except Transient as exc:
            logged = "throttled" if isinstance(exc, Throttled) else "transient"
            self._record(index, step, StepOutcome.FAILED, error=f"transient, will retry: {exc}",
                         logged=logged, error_type=type(exc).__name__)
            raise
        except Permanent as exc:
            self._record(index, step, StepOutcome.FAILED, error=f"{type(exc).__name__}: {exc}",
                         error_type=type(exc).__name__)
            raise
        self._record(index, step, change.outcome, before=change.before, after=change.after)

    def _dps_step(self, step: Step) -> Change:
        dps, target = self.c.dps, step.target
        if step.kind in _GROUP_DPS:
            self.c.group_cache.invalidate()
        off, on = ProvisioningStatus.DISABLED, ProvisioningStatus.ENABLED
        actions: dict[StepKind, Callable[[], Change]] = {
            StepKind.ENROLLMENT_DISABLED: lambda: dps.set_enrollment_status(target, off),
            StepKind.ENROLLMENT_REENABLED: lambda: dps.set_enrollment_status(target, on),
            StepKind.ENROLLMENT_DELETED: lambda: dps.delete_enrollment(target),
            StepKind.BLOCKING_ENROLLMENT_CREATED: lambda: dps.create_blocking_enrollment(
                target, certificate_pem=step.params.get("certificate"), marker=self.c.event_id),
            StepKind.BLOCKING_ENROLLMENT_REMOVED: lambda: self._remove_blocking(target),
            StepKind.GROUP_DISABLED: lambda: dps.set_group_status(target, off),
            StepKind.GROUP_DELETED: lambda: dps.delete_group(target),
        }
        action = actions.get(step.kind)
        if action is None:
            raise Permanent(f"{step.kind} is not a DPS step")
        return action()

    def _remove_blocking(self, registration_id: str) -> Change:
        current = self.c.dps.get_enrollment(registration_id)
        if current is None:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")
        if not current.is_blocking:
            raise Permanent(f"enrollment {registration_id} is the device's own, not a blocking one; kept")
        return self.c.dps.delete_enrollment(registration_id)

    def _hub_step(self, step: Step) -> Change:
        if step.kind in ACTIONS:
            return self._purge(step)
        if not step.hub:
            raise HubNotConfigured(f"{step.kind} on {step.target} names no hub (no assignedHub)")
        registry = self.c.registries.for_hub(step.hub)
        match step.kind:
            case StepKind.HUB_IDENTITY_DISABLED:
                return _disable(registry, step)
            case StepKind.HUB_IDENTITY_DELETED:
                return registry.delete(step.target)
            case StepKind.HUB_IDENTITY_REENABLED:
                return registry.enable(step.target)
        raise Permanent(f"{step.kind} is not a hub step")

    def _purge(self, step: Step) -> Change:
        result = purge_group(
            self.c.event_id, step.target, step.kind, dps=self.c.dps, registries=self.c.registries,
            work=self.c.group_work, progress=self.c.progress, reason=step.params.get("statusReason"))
        self.warnings.extend(result.warnings)
        total = result.total
        summary = (f"devices {total.done}, {total.summary()}, bulk calls {result.calls}, "
                   f"import jobs {result.jobs}")  # jobs: hubs purged by an import job, not in the calls
        if total.failed:
            raise Permanent(f"{total.failed} devices not purged ({summary})")
        outcome = StepOutcome.DONE if total.changed else StepOutcome.ALREADY_DONE
        return Change(outcome, None, summary)

    def _scales_out(self, index: int, hub_steps: list[tuple[int, Step]]) -> bool:
        """Group steps go to the work queue when there is one and the step is the plan's last."""
        return self.c.work_queue is not None and hub_steps[-1][0] == index

    def _scale_out(self, index: int, step: Step) -> Outcome:
        """Emit (or re-send) the step's batches; the work-queue function finishes the event."""
        assert self.c.work_queue is not None  # noqa: S101 - _scales_out checked it
        group = scaleout.Group(self.c.event_id, step.target, step.kind, index)
        record = self.c.journal.get(self.c.event_id)
        if record is not None and not any(s.index == index for s in record.steps):
            self._record(index, step, StepOutcome.SKIPPED, after="batches go through the work queue")
        scaleout.emit(group, dps=self.c.dps, journal=self.c.journal, queue=self.c.work_queue,
                      page_size=self.c.group_work.page_size)
        scaleout.complete_if_settled(self.c.journal, self.c.event_id, index, self.c.notifier)
        return self.pending()

    def _waits_in_set(self, index: int, step: Step, *, last: bool) -> bool:
        """Storm coalescing (``unprovision.storm.coalesce``): True when the step waits in its hub's set."""
        storm = self.c.storm
        if storm is None or not coalesce.coalescible(step, last):
            return False
        entry = coalesce.entry_for(self.c.event_id, index, step)
        if coalesce.is_waiting(self.started_from, index):  # a redelivery while the step waits
            stored = storm.pending.get(entry.hub, entry.device_id)
            if stored is not None and stored.event_id == entry.event_id:
                storm.queue.send(coalesce.flush_message(entry.hub))  # its first delivery may have died
                return True                                           # before it sent one
            record = self.c.journal.get(self.c.event_id)  # a flush finishes the event before removing it
            if record is not None and is_finished(record.status):
                return True
        elif not coalesce.should_join(storm, entry.hub):
            return False
        self._record(index, step, StepOutcome.SKIPPED, after=coalesce.PENDING_AFTER)
        coalesce.join(storm, entry, self.c.journal)
        return True

    # -- confirmation ------------------------------------------------------------------------------------
    def _confirm(self, dps_steps: list[tuple[int, Step]]) -> None:
        """Re-read each DPS target once; the latest applied step per target says what must be true."""
        wanted: dict[tuple[str, str], tuple[int, Step]] = {}
        for i, step in dps_steps:
            scope = "group" if step.kind in _GROUP_DPS else "enrollment"
            wanted[(scope, step.target.lower())] = (i, step)
        for (scope, _), (i, step) in wanted.items():
            state = self._state(scope, step.target)
            expected = _EXPECTED[step.kind]
            if state != expected:
                error = f"confirm: {scope} {step.target} is {state} after {step.kind}, expected {expected}"
                self._record(i, step, StepOutcome.FAILED, error=error, error_type=ConfirmFailed.__name__)
                raise ConfirmFailed(error)

    def _state(self, scope: str, target: str) -> str:
        if scope == "group":
            group = self.c.dps.get_group(target)
            return "absent" if group is None else str(group.status)
        enrollment = self.c.dps.get_enrollment(target)
        return "absent" if enrollment is None else str(enrollment.status)

    # -- journal -----------------------------------------------------------------------------------------
    def _record(self, index: int, step: Step, outcome: StepOutcome, *, before: str | None = None,
                after: str | None = None, error: str | None = None, logged: str | None = None,
                error_type: str | None = None) -> None:
        """Journal one step's outcome, then log it with the structured properties (shared/logfields.py):
        ``logged`` refines a failure as ``transient``/``throttled``; the log's ``error`` is the exception
        type only (``error_type``), never its text."""
        self.c.journal.record_step(self.c.event_id, StepRecord(
            index=index, kind=step.kind.value, target=step.target, outcome=StepOutcome(outcome).value,
            hub=step.hub, before=None if before is None else str(before),
            after=None if after is None else str(after), error=error))
        failed = StepOutcome(outcome) is StepOutcome.FAILED
        log_fields(log, logging.WARNING if failed else logging.INFO, "step", event_id=self.c.event_id,
                   correlation_id=self.c.correlation_id, target=step.target, step=step.kind.value,
                   outcome=logged or StepOutcome(outcome).value, hub=step.hub, eventType=self.plan.event_type,
                   error=error_type)

    def pending(self) -> Outcome:
        record = self.c.journal.get(self.c.event_id)
        if record is not None and is_finished(record.status):
            return Outcome.from_record(record)
        steps = tuple(plan_steps(record, self.plan).values()) if record else ()
        return Outcome(self.c.event_id, EventStatus.IN_PROGRESS, steps, tuple(self.warnings), self.plan)

    def _finish(self, status: EventStatus, error: str | None) -> Outcome:
        self.c.journal.finish(self.c.event_id, status, error)
        bad = status in (EventStatus.FAILED, EventStatus.REFUSED)
        log_fields(log, logging.WARNING if bad else logging.INFO, "event", event_id=self.c.event_id,
                   correlation_id=self.c.correlation_id, target=self.plan.target, step="event",
                   outcome=status.value, eventType=self.plan.event_type)
        record = self.c.journal.get(self.c.event_id)
        steps = tuple(plan_steps(record, self.plan).values()) if record else ()
        outcome = Outcome(self.c.event_id, status, steps, tuple(self.warnings), self.plan, error)
        if self.c.notifier is not None:
            try:
                self.c.notifier.publish({**outcome.to_dict(), "correlationId": self.c.correlation_id})
            except UnprovisionError as exc:  # the journal holds the truth; a lost notice must not undo it
                log_fields(log, logging.WARNING, "outcome notification failed", event_id=self.c.event_id,
                           correlation_id=self.c.correlation_id, target=self.plan.target, step="notify",
                           outcome="failed", error=type(exc).__name__)
                outcome = replace(outcome, warnings=(*outcome.warnings, "outcome notification failed"))
        return outcome


def _disable(registry: DeviceRegistry, step: Step) -> Change:
    """An absent identity cannot connect: for a revocation that is already done (the planner plans the
    step anyway and warns). Re-enabling an absent one stays a failure."""
    try:
        return registry.disable(step.target, step.params.get("statusReason"))
    except NotFound:
        return Change(StepOutcome.ALREADY_DONE, "absent", "absent")


_EXPECTED: dict[StepKind, str] = {
    StepKind.ENROLLMENT_DISABLED: ProvisioningStatus.DISABLED.value,
    StepKind.BLOCKING_ENROLLMENT_CREATED: ProvisioningStatus.DISABLED.value,
    StepKind.ENROLLMENT_REENABLED: ProvisioningStatus.ENABLED.value,
    StepKind.ENROLLMENT_DELETED: "absent",
    StepKind.BLOCKING_ENROLLMENT_REMOVED: "absent",
    StepKind.GROUP_DISABLED: ProvisioningStatus.DISABLED.value,
    StepKind.GROUP_DELETED: "absent",
}

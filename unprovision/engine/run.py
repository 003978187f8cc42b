"""Makes a revocation plan happen: DPS first, confirm, then the hub, every step journaled before the next.

Guarantees (see docs/engine.md):
* one effective application per eventId: a finished event returns its stored outcome and changes nothing;
* crash safety: each step's outcome is in the journal before the next step starts; a redelivered event resumes
  with the stored plan, skipping steps whose latest record is done/already_done;
* DPS before hub, and the DPS changes are re-read before any hub step: a mismatch fails the event there;
* ``Transient`` is recorded and re-raised (the host redelivers, the redelivery resumes); ``Permanent``,
  including ``HubNotConfigured``, is recorded and the event finishes as failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from shared.errors import HubNotConfigured, NotFound, Permanent, Transient, UnprovisionError
from shared.model import InventorySnapshot, ProvisioningStatus
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
)
from unprovision import groupwork
from unprovision.groupwork import GroupWork, ProgressFn
from unprovision.inventory import HUB_NOT_CONFIGURED, EventKey, GroupCache, event_key, read_snapshot
from unprovision.outcomes import TERMINAL, Outcome, StepResult, latest_steps, plan_from_dict, plan_to_dict

log = logging.getLogger(__name__)

Planner = Callable[[Any, Any, InventorySnapshot], Plan]
_OK = frozenset({StepOutcome.DONE.value, StepOutcome.ALREADY_DONE.value})
_GROUP_KINDS = frozenset(groupwork.ACTIONS)
_GROUP_DPS = frozenset({StepKind.GROUP_DISABLED, StepKind.GROUP_DELETED})


class ConfirmFailed(Permanent):
    """A DPS change did not show on re-read: never go on to the hub on a revocation DPS does not enforce."""


def apply(
    event: Any,
    *,
    dps: ProvisioningService,
    registries: DeviceRegistries,
    journal: Journal,
    policy: Any,
    planner: Planner | None = None,
    notifier: Notifier | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    group_work: GroupWork | None = None,
    group_cache: GroupCache | None = None,
) -> Outcome:
    """Apply ``event`` once; returns its outcome. Raises ``Transient`` (after recording) for redelivery."""
    key = event_key(event)
    existing = journal.get(key.event_id)
    if existing is not None and existing.status in TERMINAL:
        return Outcome.from_record(existing)
    if existing is not None and existing.plan and not dry_run:
        plan = plan_from_dict(existing.plan)  # resume with the plan decided first, not a fresh one
    else:
        plan = _decide(event, key, dps=dps, registries=registries, journal=journal, policy=policy,
                       planner=planner, cache=group_cache)
        if dry_run:
            return Outcome(key.event_id, "dry_run", warnings=plan.warnings, plan=plan)
        record = journal.begin(key.event_id, event_type=key.event_type, target=key.target, source=key.source,
                               correlation_id=key.correlation_id, plan=plan_to_dict(plan))
        if record.status in TERMINAL:
            return Outcome.from_record(record)
        plan = plan_from_dict(record.plan) if record.plan else plan
    run = _Run(key, plan, dps=dps, registries=registries, journal=journal, work=group_work or GroupWork(),
               progress=progress, notifier=notifier, cache=group_cache)
    return run.execute()


def _decide(event: Any, key: EventKey, *, dps: ProvisioningService, registries: DeviceRegistries,
            journal: Journal, policy: Any, planner: Planner | None, cache: GroupCache | None) -> Plan:
    if planner is None:
        from shared.revocation import plan_revocation  # written in parallel; bound late

        planner = plan_revocation
    snapshot = read_snapshot(event, dps, registries, journal, group_cache=cache)
    plan = planner(event, policy, snapshot)
    hub = snapshot.extra.get(HUB_NOT_CONFIGURED)
    if hub:
        plan = replace(plan, warnings=(*plan.warnings, f"assigned hub {hub} is not configured in this app"))
    return plan


class _Run:
    """One pass over a plan; holds what every step needs so the step functions stay short."""

    def __init__(self, key: EventKey, plan: Plan, *, dps: ProvisioningService, registries: DeviceRegistries,
                 journal: Journal, work: GroupWork, progress: ProgressFn | None, notifier: Notifier | None,
                 cache: GroupCache | None) -> None:
        self.key, self.plan, self.dps, self.registries = key, plan, dps, registries
        self.journal, self.work, self.progress, self.notifier = journal, work, progress, notifier
        self.cache = cache
        self.warnings: list[str] = list(plan.warnings)

    def execute(self) -> Outcome:
        if self.plan.refused:
            return self._finish("refused", self.plan.refusal)
        record = self.journal.get(self.key.event_id)
        done = _done_indices(record)
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
                if step.kind in _GROUP_KINDS and self._scale_out(i, step, hub_steps):
                    return self._pending()
                self._run_step(i, step, partial(self._hub_step, step))
        except Permanent as exc:
            return self._finish("failed", str(exc))
        return self._finish("completed", None)

    # -- steps -----------------------------------------------------------------------------------------
    def _run_step(self, index: int, step: Step, action: Callable[[], Change]) -> None:
        """Apply one step and record its outcome; a failure is recorded before it propagates."""
        try:
            change = action()
        except Transient as exc:
            self._record(index, step, StepOutcome.FAILED, error=f"transient, will retry: {exc}")
            raise
        except Permanent as exc:
            self._record(index, step, StepOutcome.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        self._record(index, step, change.outcome, before=change.before, after=change.after)

    def _dps_step(self, step: Step) -> Change:
        dps, target = self.dps, step.target
        if step.kind in _GROUP_DPS and self.cache is not None:
            self.cache.invalidate()
        off, on = ProvisioningStatus.DISABLED, ProvisioningStatus.ENABLED
        actions: dict[StepKind, Callable[[], Change]] = {
            StepKind.ENROLLMENT_DISABLED: lambda: dps.set_enrollment_status(target, off),
            StepKind.ENROLLMENT_REENABLED: lambda: dps.set_enrollment_status(target, on),
            StepKind.ENROLLMENT_DELETED: lambda: dps.delete_enrollment(target),
            StepKind.BLOCKING_ENROLLMENT_CREATED: lambda: dps.create_blocking_enrollment(
                target, certificate_pem=step.params.get("certificate"), marker=self.key.event_id),
            StepKind.BLOCKING_ENROLLMENT_REMOVED: lambda: self._remove_blocking(target),
            StepKind.GROUP_DISABLED: lambda: dps.set_group_status(target, off),
            StepKind.GROUP_DELETED: lambda: dps.delete_group(target),
        }
        action = actions.get(step.kind)
        if action is None:
            raise Permanent(f"{step.kind} is not a DPS step")
        return action()

    def _remove_blocking(self, registration_id: str) -> Change:
        current = self.dps.get_enrollment(registration_id)
        if current is None:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")
        if not current.is_blocking:
            raise Permanent(f"enrollment {registration_id} is the device's own, not a blocking one; kept")
        return self.dps.delete_enrollment(registration_id)

    def _hub_step(self, step: Step) -> Change:
        if step.kind in _GROUP_KINDS:
            return self._purge(step)
        if not step.hub:
            raise HubNotConfigured(f"{step.kind} on {step.target} names no hub (no assignedHub)")
        registry = self.registries.for_hub(step.hub)
        match step.kind:
            case StepKind.HUB_IDENTITY_DISABLED:
                return self._disable(registry, step)
            case StepKind.HUB_IDENTITY_DELETED:
                return registry.delete(step.target)
            case StepKind.HUB_IDENTITY_REENABLED:
                return registry.enable(step.target)
        raise Permanent(f"{step.kind} is not a hub step")

    @staticmethod
    def _disable(registry: DeviceRegistry, step: Step) -> Change:
        """An absent identity cannot connect: for a revocation that is already done (the planner plans the
        step anyway and warns). Re-enabling an absent one stays a failure."""
        try:
            return registry.disable(step.target, step.params.get("statusReason"))
        except NotFound:
            return Change(StepOutcome.ALREADY_DONE, "absent", "absent")

    def _purge(self, step: Step) -> Change:
        result = groupwork.purge_group(
            self.key.event_id, step.target, step.kind, dps=self.dps, registries=self.registries,
            work=self.work, progress=self.progress, reason=step.params.get("statusReason"))
        self.warnings.extend(result.warnings)
        total = result.total
        summary = (f"devices {total.done}, {total.summary()}, bulk calls {result.calls}, "
                   f"import jobs {result.jobs}")  # jobs: hubs purged by an import job, not in the calls
        if total.failed:
            raise Permanent(f"{total.failed} devices not purged ({summary})")
        outcome = StepOutcome.DONE if total.changed else StepOutcome.ALREADY_DONE
        return Change(outcome, None, summary)

    def _scale_out(self, index: int, step: Step, hub_steps: list[tuple[int, Step]]) -> bool:
        """Hand the group step to the work queue when configured and it is the plan's last step."""
        last = hub_steps[-1][0] == index
        if not self.work.scale_out or not last or index > groupwork.MAX_SCALE_OUT_INDEX:
            return False
        record = self.journal.get(self.key.event_id)
        if record is None or groupwork.batch_progress(record, index)[1] is None:
            groupwork.emit_batches(self.key.event_id, step.target, step.kind, index, dps=self.dps,
                                   journal=self.journal, work=self.work, notifier=self.notifier)
        else:
            groupwork.complete_if_done(self.journal, self.key.event_id, index, self.notifier)
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
                self._record(i, step, StepOutcome.FAILED, error=error)
                raise ConfirmFailed(error)

    def _state(self, scope: str, target: str) -> str:
        if scope == "group":
            group = self.dps.get_group(target)
            return "absent" if group is None else str(group.status)
        enrollment = self.dps.get_enrollment(target)
        return "absent" if enrollment is None else str(enrollment.status)

    # -- journal -----------------------------------------------------------------------------------------
    def _record(self, index: int, step: Step, outcome: StepOutcome, *, before: str | None = None,
                after: str | None = None, error: str | None = None) -> None:
        self.journal.record_step(self.key.event_id, StepRecord(
            index=index, kind=step.kind.value, target=step.target, outcome=StepOutcome(outcome).value,
            hub=step.hub,
            before=None if before is None else str(before), after=None if after is None else str(after),
            error=error))

    def _pending(self) -> Outcome:
        record = self.journal.get(self.key.event_id)
        if record is not None and record.status in TERMINAL:
            return Outcome.from_record(record)
        steps = latest_steps(record, self.plan) if record else ()
        return Outcome(self.key.event_id, "in_progress", steps, tuple(self.warnings), self.plan)

    def _finish(self, status: str, error: str | None) -> Outcome:
        self.journal.finish(self.key.event_id, status, error)
        record = self.journal.get(self.key.event_id)
        steps: tuple[StepResult, ...] = latest_steps(record, self.plan) if record else ()
        outcome = Outcome(self.key.event_id, status, steps, tuple(self.warnings), self.plan, error)
        if self.notifier is not None:
            try:
                self.notifier.publish(outcome.to_dict())
            except UnprovisionError as exc:  # the journal holds the truth; a lost notice must not undo it
                log.warning("outcome notification failed for %s: %s", self.key.event_id, type(exc).__name__)
                outcome = replace(outcome, warnings=(*outcome.warnings, "outcome notification failed"))
        return outcome


_EXPECTED: dict[StepKind, str] = {
    StepKind.ENROLLMENT_DISABLED: ProvisioningStatus.DISABLED.value,
    StepKind.BLOCKING_ENROLLMENT_CREATED: ProvisioningStatus.DISABLED.value,
    StepKind.ENROLLMENT_REENABLED: ProvisioningStatus.ENABLED.value,
    StepKind.ENROLLMENT_DELETED: "absent",
    StepKind.BLOCKING_ENROLLMENT_REMOVED: "absent",
    StepKind.GROUP_DISABLED: ProvisioningStatus.DISABLED.value,
    StepKind.GROUP_DELETED: "absent",
}


def _done_indices(record: EventRecord | None) -> set[int]:
    """Steps whose latest record is done/already_done; scale-out bookkeeping records (emission, single
    batches) do not count, only the group step's final record does."""
    latest: dict[int, str] = {}
    for step in record.steps if record else ():
        if not (step.before or "").startswith(groupwork.BOOKKEEPING):
            latest[step.index] = step.outcome
    return {i for i, outcome in latest.items() if outcome in _OK}

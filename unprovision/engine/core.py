"""The engine: built once from the settings, and ``Engine.apply`` is the one way an event gets applied.

Every path goes through ``apply``: the lifecycle queue, Service Bus, HTTP (dry run included), audit
remediation (timer, HTTP, CLI) and the CLI's ``apply``. What it does with one event, in order:

1. **Authority**: ``force`` needs the admin key over HTTP (``force_allowed``) or a source listed in
   ``FORCE_SOURCES``; otherwise the event is journaled as a rejection and answered ``forbidden``.
2. **Identity**: an eventId already journaled with another body is a conflict: journaled as a rejection,
   answered ``conflict``, never applied as the first (``identity``).
3. **Finished?** A finished event answers its stored outcome. The one exception is a group event that
   failed with batches left over: it is reopened and exactly those batches are sent again.
4. **Serialise** on the target (``lease``): at most one event per device or group at a time, across
   instances.
5. **Plan** from a fresh inventory (or resume the stored plan), **begin** in the journal with the
   fingerprint, and **run** it (``run``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

from shared.events import EventType, LifecycleEvent
from shared.lifecycle import EventStatus, is_finished
from shared.logfields import log_fields
from shared.model import InventorySnapshot
from shared.plan import Plan, plan_from_dict, plan_to_dict
from shared.policy import Policy
from shared.ports import DeviceRegistries, EventRecord, Journal, Notifier, ProvisioningService, WorkQueue
from shared.revocation import plan_revocation
from unprovision.engine import identity, lease
from unprovision.engine.inventory import HUB_NOT_CONFIGURED, GroupCache, read_snapshot
from unprovision.engine.run import Context, Run
from unprovision.group import scaleout
from unprovision.group.batches import ACTIONS
from unprovision.group.inprocess import GroupWork, ProgressFn
from unprovision.outcomes import Answer, Outcome
from unprovision.storm import coalesce
from unprovision.storm.coalesce import Storm

log = logging.getLogger(__name__)

Planner = Callable[[LifecycleEvent, Policy, InventorySnapshot], Plan]


@dataclass(frozen=True)
class Engine:
    """Every collaborator an event needs, fixed for the process. ``work_queue`` None: group steps are
    purged in process (the CLI), else they scale out through it (the function app)."""

    dps: ProvisioningService
    registries: DeviceRegistries
    journal: Journal
    policy: Policy
    group_work: GroupWork
    notifier: Notifier | None = None
    work_queue: WorkQueue | None = None
    group_cache: GroupCache = field(default_factory=GroupCache)
    force_sources: frozenset[str] = frozenset()
    planner: Planner = plan_revocation
    lease_ttl: float = lease.DEFAULT_TTL
    lease_wait: float = lease.DEFAULT_WAIT
    sleep: Callable[[float], None] = time.sleep
    storm: Storm | None = None  # storm coalescing of single devices' hub steps (``unprovision.storm``)

    def apply(self, event: LifecycleEvent, *, dry_run: bool = False, force_allowed: bool = False,
              progress: ProgressFn | None = None) -> Outcome:
        """Apply ``event`` once and return its outcome; raises ``Transient`` (after recording) when the
        delivery should be retried, ``Permanent`` when the inventory cannot be read."""
        if event.force and not (force_allowed or event.source in self.force_sources):
            return self._forbidden(event, dry_run)
        print_ = identity.fingerprint(event)
        existing = self.journal.get(event.event_id)
        if existing is not None and not identity.same_event(existing, event, print_):
            return self._conflict(event, existing, dry_run)
        if dry_run:
            return self._dry_run(event)
        if existing is not None and is_finished(existing.status) and not self._resumable(existing):
            return Outcome.from_record(existing)
        with lease.held(self.journal, event.target, ttl=self.lease_ttl, wait=self.lease_wait,
                        sleep=self.sleep):
            return self._apply_held(event, print_, progress)

    # -- the steps above -----------------------------------------------------------------------------------

    def _apply_held(self, event: LifecycleEvent, print_: str, progress: ProgressFn | None) -> Outcome:
        """Under the target's lease: re-read (a duplicate may have finished while we waited), then run."""
        record = self.journal.get(event.event_id)
        if record is not None and is_finished(record.status):
            if not self._resumable(record):
                return Outcome.from_record(record)
            self._reopen(record)
        if record is not None and record.plan:
            plan = plan_from_dict(record.plan)  # resume with the plan decided first, not a fresh one
        else:
            if self.storm is not None and not event.is_group:  # earlier steps on the device land first
                coalesce.settle_earlier(self.storm, event.target,
                                        coalesce.Apply(self.registries, self.journal, self.notifier))
            plan = self._decide(event)
            record = self.journal.begin(
                event.event_id, event_type=str(event.type), target=event.target, source=event.source,
                correlation_id=event.correlation_id or event.event_id, plan=plan_to_dict(plan),
                fingerprint=print_)
            if not identity.same_event(record, event, print_):  # another body began this eventId meanwhile
                return self._conflict(event, record, dry_run=False)
            plan = plan_from_dict(record.plan) if record.plan else plan
        context = self._context(event.event_id, progress, event.correlation_id or event.event_id)
        return Run(plan, context).execute()

    def _decide(self, event: LifecycleEvent) -> Plan:
        hub_read = None
        if self.storm is not None and event.type is not EventType.FOUND:  # a re-enable never waits
            hub_read = partial(coalesce.reads_identity, self.storm)
        snapshot = read_snapshot(event, self.dps, self.registries, self.journal, group_cache=self.group_cache,
                                 hub_read=hub_read)
        plan = self.planner(event, self.policy, snapshot)
        hub = snapshot.extra.get(HUB_NOT_CONFIGURED)
        if hub:
            warning = f"assigned hub {hub} is not configured in this app"
            plan = replace(plan, warnings=(*plan.warnings, warning))
        return plan

    def _context(self, event_id: str, progress: ProgressFn | None,
                 correlation_id: str | None = None) -> Context:
        return Context(event_id, self.dps, self.registries, self.journal, self.notifier, self.group_cache,
                       self.group_work, self.work_queue, progress, correlation_id, self.storm)

    def _dry_run(self, event: LifecycleEvent) -> Outcome:
        plan = self._decide(event)
        return Outcome(event.event_id, Answer.DRY_RUN, warnings=plan.warnings, plan=plan)

    # -- resuming a group event whose batches failed -------------------------------------------------------

    def _group_steps(self, record: EventRecord) -> list[int]:
        plan = plan_from_dict(record.plan) if record.plan else None
        return [i for i, s in enumerate(plan.steps if plan else ()) if s.kind in ACTIONS]

    def _resumable(self, record: EventRecord) -> bool:
        """Only a failed group event with failed batches resumes; every other finished event is final."""
        if record.status != EventStatus.FAILED or self.work_queue is None:
            return False
        return any(scaleout.has_failed_batches(self.journal, record.event_id, i)
                   for i in self._group_steps(record))

    def _reopen(self, record: EventRecord) -> None:
        self.journal.finish(record.event_id, EventStatus.IN_PROGRESS)
        for index in self._group_steps(record):
            count = scaleout.reopen_failed(self.journal, record.event_id, index)
            log_fields(log, logging.INFO, f"{count} failed batches sent again", event_id=record.event_id,
                       correlation_id=record.correlation_id, target=record.target, step="reopen",
                       outcome="resent")

    # -- refusals that do not claim the eventId --------------------------------------------------------------

    def _forbidden(self, event: LifecycleEvent, dry_run: bool) -> Outcome:
        reason = ("force needs the admin key (POST /api/unprovision/force) or a source listed in "
                  "FORCE_SOURCES")
        if event.type is not EventType.FOUND:
            reason = "force applies to found events only"
        return self._refuse(event, Answer.FORBIDDEN, "force", reason, dry_run)

    def _conflict(self, event: LifecycleEvent, existing: EventRecord, dry_run: bool) -> Outcome:
        return self._refuse(event, Answer.CONFLICT, "eventId", identity.conflict_reason(existing), dry_run)

    def _refuse(self, event: LifecycleEvent, answer: Answer, field_name: str, reason: str,
                dry_run: bool) -> Outcome:
        if not dry_run:
            body = event.model_dump_json(by_alias=True, exclude_none=True)
            self.journal.record_rejection(body, [{"field": field_name, "reason": reason}], event.event_id)
        log_fields(log, logging.WARNING, f"event not applied ({field_name}): {reason}",
                   event_id=event.event_id, correlation_id=event.correlation_id or event.event_id,
                   target=event.target, step="accept", outcome=answer.value, eventType=event.type.value)
        return Outcome(event.event_id, answer, error=f"{field_name}: {reason}")

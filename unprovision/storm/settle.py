"""Apply claimed pending hub steps and finish their events: one journal record and one outcome per event.

A set at or above the job threshold goes by one import job per action (not limited by the identity-registry
throttle, docs/azure-behaviour.md §9); a smaller set, or a job that reports failed devices (a job's result
counts devices but does not name them), goes by bulk calls of at most 100 devices paid from the hub's
shared budget, whose results name each device. Either way each event's hub step is recorded with how it
was applied (``import job <id>`` or ``bulk call``), then the event finishes and its outcome is published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import Permanent, UnprovisionError
from shared.lifecycle import EventStatus, IllegalTransition
from shared.logfields import log_fields
from shared.plan import StepKind, StepOutcome
from shared.ports import DeviceRegistry, Journal, Notifier, PendingHubStep, RateLimiter, StepRecord
from unprovision.group.batches import BATCH_LIMIT, bulk_result
from unprovision.group.jobs import ImportJobRunner
from unprovision.outcomes import publish_recorded
from unprovision.throttle import Sleep

log = logging.getLogger(__name__)

KIND_OF = {"disable": StepKind.HUB_IDENTITY_DISABLED, "delete": StepKind.HUB_IDENTITY_DELETED}
ACTION_OF = {kind: action for action, kind in KIND_OF.items()}
BULK_HOW = "bulk call"
JOB_HOW = "import job"
_APPLIED = frozenset({StepOutcome.DONE.value, StepOutcome.ALREADY_DONE.value})


@dataclass(frozen=True)
class Applied:
    """What happened to one pending step's device."""

    outcome: StepOutcome
    how: str  # "import job <id>" or "bulk call": which job or call applied it
    error: str | None = None


@dataclass(frozen=True)
class Hub:
    """Where a set of steps is applied: the hub's registry and budget, and its job runner if it has one."""

    registry: DeviceRegistry
    limiter: RateLimiter
    sleep: Sleep
    runner: ImportJobRunner | None = None
    job_threshold: int | None = None


def apply_steps(steps: Sequence[PendingHubStep], hub: Hub) -> dict[str, Applied]:
    """Apply ``steps`` (one hub); the result per device ID. ``Transient`` propagates (nothing is recorded:
    the steps stay claimed and the next flush takes them again)."""
    results: dict[str, Applied] = {}
    for action in ("disable", "delete"):
        group = [s for s in steps if s.action == action]
        if group:
            results.update(_by_job(group, hub) or _by_bulk(group, hub))
    return results


def _by_job(steps: list[PendingHubStep], hub: Hub) -> dict[str, Applied] | None:
    """One import job; None when the set is too small, the hub has no runner, or the job could not say
    which devices it failed (the bulk path then applies them again, idempotently, and names each)."""
    if hub.runner is None or hub.job_threshold is None or len(steps) < hub.job_threshold:
        return None
    ids = [s.device_id for s in steps]
    try:
        if steps[0].action == "delete":
            counts = hub.runner.delete(ids)
        else:
            counts = hub.runner.disable(ids, reasons={s.device_id: s.reason or "" for s in steps})
    except Permanent as exc:
        log.warning("import job on %s failed (%s); the set goes by bulk calls", hub.registry.hub,
                    type(exc).__name__)
        return None
    if counts.failed:
        return None
    how = f"{JOB_HOW} {getattr(counts, 'job_id', '') or '(nothing to change)'}"
    # a job counts changed and unchanged devices but does not name them: each step reads "done" with the
    # job that covered it ("already_done" when it changed none); the job's totals are in the log
    log.info("import job on %s: %s devices, changed %s, unchanged %s", hub.registry.hub, len(steps),
             counts.changed, counts.unchanged)
    outcome = StepOutcome.DONE if counts.changed else StepOutcome.ALREADY_DONE
    return {s.device_id: Applied(outcome, how) for s in steps}


def _by_bulk(steps: list[PendingHubStep], hub: Hub) -> dict[str, Applied]:
    """Bulk calls of at most 100 devices, each device with its own event's statusReason in the same call
    (one device query per call, where a call per reason would cost one per device: S1 allows 20 a minute)."""
    results: dict[str, Applied] = {}
    for start in range(0, len(steps), BATCH_LIMIT):
        chunk = steps[start:start + BATCH_LIMIT]
        ids = [s.device_id for s in chunk]
        reasons = {s.device_id: s.reason for s in chunk if s.reason}
        try:
            result = bulk_result(hub.registry, chunk[0].action, ids, limiter=hub.limiter, sleep=hub.sleep,
                                 reason=reasons or None)
        except Permanent as exc:
            error = f"{type(exc).__name__}: {exc}"
            results.update({i: Applied(StepOutcome.FAILED, BULK_HOW, error) for i in ids})
            continue
        results.update({i: Applied(StepOutcome.DONE, BULK_HOW) for i in result.changed})
        results.update({i: Applied(StepOutcome.ALREADY_DONE, BULK_HOW) for i in result.unchanged})
        for device_id, code in result.failed.items():
            absent = "DeviceNotFound" in code  # an absent identity cannot connect: the goal holds
            results[device_id] = Applied(StepOutcome.ALREADY_DONE, BULK_HOW) if absent else \
                Applied(StepOutcome.FAILED, BULK_HOW, f"{BULK_HOW}: {code}")
    return results


def applied_here(after: str | None) -> bool:
    """Whether a step record's ``after`` says a flush or a direct settle recorded it (``Applied.how``)."""
    return after is not None and (after == BULK_HOW or after.startswith(f"{JOB_HOW} "))


def finish_events(steps: Sequence[PendingHubStep], results: dict[str, Applied], *, journal: Journal,
                  notifier: Notifier | None) -> int:
    """Record each step's outcome on its event and finish the event; how many events this call finished.
    An event already finished (a duplicate flush, or a settle after a crash) is left as it is."""
    finished = 0
    for step in steps:
        applied = results.get(step.device_id)
        if applied is not None and finish_event(step, applied, journal=journal, notifier=notifier):
            finished += 1
    return finished


def finish_event(step: PendingHubStep, applied: Applied, *, journal: Journal,
                 notifier: Notifier | None) -> bool:
    record = journal.get(step.event_id)
    if record is None or record.status != EventStatus.IN_PROGRESS:
        return False
    standing = next((r for r in record.steps if r.index == step.step_index), None)
    if standing is not None and standing.outcome in _APPLIED:  # a flush killed after recording it
        applied = Applied(StepOutcome(standing.outcome), standing.after or applied.how)
    else:
        journal.record_step(step.event_id, StepRecord(
            step.step_index, KIND_OF[step.action].value, step.device_id, applied.outcome.value, hub=step.hub,
            after=applied.how, error=applied.error))
    failed = applied.outcome is StepOutcome.FAILED
    try:
        journal.finish(step.event_id, EventStatus.FAILED if failed else EventStatus.COMPLETED, applied.error)
    except IllegalTransition:
        return False  # another settle finished it first
    log_fields(log, logging.WARNING if failed else logging.INFO, "event", event_id=step.event_id,
               correlation_id=record.correlation_id, target=record.target, step="event",
               outcome=EventStatus.FAILED.value if failed else EventStatus.COMPLETED.value,
               hub=step.hub, eventType=record.event_type)
    final = journal.get(step.event_id)
    if final is not None and notifier is not None:
        try:
            publish_recorded(notifier, final)
        except UnprovisionError as exc:  # the journal holds the truth; a lost notice must not undo it
            log.warning("outcome notification of %s failed: %s", step.event_id, type(exc).__name__)
    return True

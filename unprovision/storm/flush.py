"""The work-queue side of storm coalescing: drain one hub's pending set.

A flush message names only a hub (``{"flushHub": "<hub host name>"}``); what is applied is what the journal's
storage holds in that hub's set, so a forged message can name no device of its own. The flush runs under the
hub's flush lease (``wait=0``: a delivery that finds it held returns at once when no step waits, because the
holder re-reads the set before it lets go, and otherwise sends itself again to be delivered once the holder's
lease would have expired, because the holder may be dead and its own message reappears only after the queue's
invisibility). Each round claims every step that waits (and steps an earlier flush claimed and died holding:
the lease makes this flush the only one; those whose events it had already finished are removed instead, see
``_drop_finished``), applies them — one import job per action at or above the job threshold, bulk calls paid
from the hub's budget below it — records each event's step and finishes it, then removes the steps. After
letting the lease go it looks once more and sends a new message when steps wait, so a step that joined in the
gap is never stranded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.errors import FieldError, Rejected, Transient
from shared.ports import PendingHubStep
from unprovision.engine import lease
from unprovision.group.jobs import ImportJobRunner
from unprovision.storm import settle
from unprovision.storm.coalesce import (
    DIRECT_CLAIM,
    FLUSH_CLAIM,
    FLUSH_KEY,
    REQUEST_STALE,
    Apply,
    Storm,
    event_finished,
    flush_lease_key,
    flush_message,
)

log = logging.getLogger(__name__)

MAX_ROUNDS = 50  # then the lease is let go and a new message carries on (bounded work per delivery)
ROUND_SECONDS = 300.0  # no round starts after this long (the host's functionTimeout is 10 minutes)
GATHER_QUIET = 10.0  # seconds a set below the job threshold waits for more steps to join (see _gather)
GATHER_MAX = 120.0  # seconds at most it waits in all


def parse_flush(message: Any, hubs: list[str]) -> str:
    """The hub a flush message names; ``Rejected`` unless it is exactly ``{"flushHub": <configured hub>}``."""
    if not isinstance(message, dict) or set(message) != {FLUSH_KEY}:
        raise Rejected([FieldError("$", f"a flush message has exactly one key, {FLUSH_KEY}")],
                       "invalid flush message")
    hub = message[FLUSH_KEY]
    known = {h.lower(): h for h in hubs}
    if not isinstance(hub, str) or hub.lower() not in known:
        raise Rejected([FieldError(FLUSH_KEY, "not a hub this app is configured for")],
                       "invalid flush message")
    return known[hub.lower()]


def is_flush(message: Any) -> bool:
    return isinstance(message, dict) and FLUSH_KEY in message


def flush(hub: str, storm: Storm, ports: Apply, *, last_delivery: bool) -> int:
    """Drain ``hub``'s set; how many events this delivery finished. ``Transient`` propagates for
    redelivery (the claimed steps are taken again by the next flush) except on the last delivery, where a
    fresh message is sent instead, so the steps are never left to the poison queue."""
    finished = 0
    try:
        # ttl read now, not bound at import: the soak's host compresses it below the queue's invisibility, as
        # production has it (60 s lease, 10 min invisibility), so a dead holder's own message, redelivered,
        # finds its lease expired and carries on; a delivery finding a live holder returns (see above)
        with lease.held(ports.journal, flush_lease_key(hub), ttl=lease.DEFAULT_TTL, wait=0.0,
                        sleep=storm.sleep) as held:
            finished = _drain(hub, storm, ports, held)
    except lease.TargetBusy:
        if not any(_ours(step, "") for step in storm.pending.entries(hub)):
            log.info("flush of %s: another delivery holds the hub's set", hub)
            return 0
        # steps wait (or are claimed by the holder) while another delivery holds the set. Its holder may have
        # been killed, and its own message reappears only after the queue's invisibility (10 min): look again
        # once its lease would have expired. A delayed message, not a failure: failing would log an error
        # and, at the host's 5 s visibilityTimeout, spin through the retries while a live holder gathers
        # or waits for its job (seen in the storm benchmark).
        storm.queue.send(flush_message(hub), delay=lease.DEFAULT_TTL)
        log.info("flush of %s: another delivery holds the hub's set; looking again in %.0f s", hub,
                 lease.DEFAULT_TTL)
        return 0
    except Transient as exc:
        if not last_delivery:
            raise
        log.warning("flush of %s gave up on its last delivery (%s); sent again", hub, type(exc).__name__)
        storm.queue.send(flush_message(hub))
        return finished
    if storm.pending.has_waiting(hub) and storm.pending.request_flush(hub, REQUEST_STALE):
        storm.queue.send(flush_message(hub))  # steps joined while this flush held the set
    return finished


def _drain(hub: str, storm: Storm, ports: Apply, held: lease.Lease) -> int:
    storm.pending.clear_flush_request(hub)  # steps that join from now on ask for a message of their own
    _drop_finished(hub, storm, ports)
    finished, started = 0, storm.clock()
    claim = f"{FLUSH_CLAIM}{uuid.uuid4().hex}"
    runner = storm.import_jobs(hub) if storm.import_jobs is not None else None  # one per delivery
    for _ in range(MAX_ROUNDS):
        if storm.clock() - started > ROUND_SECONDS:
            break
        ours = _gather(hub, storm, held, claim) if runner is not None else _waiting(hub, storm, claim)
        if not ours:
            break
        held.check()
        claimed = storm.pending.claim(ours, claim)
        if claimed:
            finished += _apply(hub, claimed, storm, ports, held, runner=runner)
    return finished


def _drop_finished(hub: str, storm: Storm, ports: Apply) -> None:
    """Remove the steps an earlier flush claimed whose events are finished: it applied them and was killed
    before it removed them. Applied again now, one could undo a later event on its device (a ``found``
    re-enabling it, which ``settle_earlier`` let through because the earlier event was finished). It reads
    the set once more per delivery; only an earlier flush's claims are looked up in the journal, so journal
    reads (one a step) come only after a killed flush."""
    stale = [s for s in storm.pending.entries(hub) if s.claim is not None and s.claim.startswith(FLUSH_CLAIM)
             and event_finished(ports.journal, s.event_id)]
    if stale:
        removed = storm.pending.remove(stale)
        log.info("flush of %s: %s steps of finished events left by an earlier flush removed", hub, removed)


def _gather(hub: str, storm: Storm, held: lease.Lease, claim: str) -> list[PendingHubStep]:
    """This round's steps, on a hub with a job runner. A set below the job threshold waits while steps
    still join: a storm is filling it, and a job costs the hub's registry budget nothing, where bulk calls
    cost an operation a device (as the direct way does) plus a device query per call. It waits until
    nothing joined for ``GATHER_QUIET``, or ``GATHER_MAX`` passed. Steps only wait in a set when the
    budget is spent, so a lone step waits ``GATHER_QUIET`` more at most."""
    ours = _waiting(hub, storm, claim)
    sleep, deadline = lease.guarded_sleep(held, storm.sleep), storm.clock() + GATHER_MAX
    while 0 < len(ours) < storm.job_threshold and storm.clock() < deadline:
        sleep(GATHER_QUIET)
        before, ours = len(ours), _waiting(hub, storm, claim)
        if len(ours) <= before:
            break  # nothing joined meanwhile: the storm is over, or there never was one
    return ours


def _waiting(hub: str, storm: Storm, claim: str) -> list[PendingHubStep]:
    return [s for s in storm.pending.entries(hub) if _ours(s, claim)]


def _ours(step: PendingHubStep, claim: str) -> bool:
    """Waiting steps, and steps a flush claimed (an earlier one that died: only the lease holder flushes).
    A step an event is settling directly (under its target's lease) is that event's."""
    return step.claim is None or step.claim == claim or not step.claim.startswith(DIRECT_CLAIM)


def _apply(hub: str, steps: list[PendingHubStep], storm: Storm, ports: Apply, held: lease.Lease, *,
           runner: ImportJobRunner | None) -> int:
    target = settle.Hub(ports.registries.for_hub(hub), storm.limiter, lease.guarded_sleep(held, storm.sleep),
                        runner, storm.job_threshold)
    results = settle.apply_steps(steps, target)
    held.check()
    finished = settle.finish_events(steps, results, journal=ports.journal, notifier=ports.notifier)
    storm.pending.remove(steps)
    log.info("flush of %s: %s steps applied, %s events finished", hub, len(steps), finished)
    return finished

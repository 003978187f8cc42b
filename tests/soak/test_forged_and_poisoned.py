"""Soak: forged work-queue batches, and a poisoned batch followed by recovery, through the local host
(issue 11, items 4 and 5; docs/reliability.md).

Everything runs under ``python -m devhost`` (``hostproc.HostProcess``) with the real queue triggers: group
events go onto the lifecycle queue, the app scales them out through the work queue, and what a device can
still do is judged at the emulator's device endpoints (DPS registration, device-to-cloud send).

* **Forged batches**: after a group ``compromised`` completed, hand-written messages go onto the work queue:
  issue 11's own (a batch naming a device outside the group, on the other hub, with action ``delete``),
  genuine batch references with devices, an action or a hub added, references to an event nobody sent, to
  batches, runs or steps the event never emitted, a lifecycle event, hostile eventIds, non-JSON. Each one is
  rejected and journaled with field + reason (never poisoned, never applied); every victim still registers
  and sends; a replay of a genuine message changes nothing.
* **Poisoned batch, then recovery**: the emulator fails hub-2's bulk endpoint (``POST /devices``, 503) while
  two groups are revoked. Group A's hub-2 batch fails its five deliveries; on the last one the app settles it
  ``failed``, so event A ends ``failed`` with the remainder instead of hanging. Group B's hub-2 batch is
  taken for its last delivery by an instance that dies (the test receives it and never settles it: what a
  host killed mid-invocation leaves); the host then moves it to the work poison queue without running it,
  so event B stays ``in_progress``; the audit reports event B as stuck and the poison queue. The fault is
  lifted; re-sending each event applies exactly its missing devices (counted at the emulator: no other bulk
  call). At the end every member of both groups is refused at registration and at send, the siblings
  outside the groups still work, no step was applied twice, and replaying the poisoned message changes
  nothing.

Host timings: host.json's ``visibilityTimeout`` is lowered to 2 s and ``maxPollingInterval`` to 0.5 s through
``AzureFunctionsJobHost__`` app settings (as Azure allows); ``maxDequeueCount`` stays 5, the value the app
reads from host.json to know a message's last delivery.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from emulator.testing import EmulatorHandle
from tests.integration import engine_fleet as fleet
from tests.soak.checks import host_loop_problems, journal_rows
from tests.soak.conftest import AppConfig, write_local_settings
from tests.soak.hostproc import HostProcess
from tests.soak.settle import queue
from tests.soak.test_revocation_invariants import working
from unprovision import wiring
from unprovision.audit.run import run_audit
from unprovision.wiring import Services

HOST_TIMINGS = {
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:02",
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.5",
    # the soak emulator does not throttle; the app's budget need not pace these small groups either
    "IOTHUB_REGISTRY_OPS_PER_MINUTE": "100000",
}
HUB2_BULK_FAILS = {"rate5xx": 1.0, "status5xx": 503, "paths": ["^/devices/?$"], "methods": ["POST"],
                   "services": ["hub-2"]}
GROUP_STEP = "GroupDevicesDisabled"
FOURTH_FAILURE = re.compile(r"function work_queue failed on message \S+ \(dequeue count 4\)")


@dataclass(frozen=True)
class Size:
    members: int  # per group
    victims: int  # devices outside the group that forged batches aim at
    timeout: float


CI = Size(members=12, victims=2, timeout=120)
FULL = Size(members=240, victims=10, timeout=600)  # 240 members: two batches per hub


# -- helpers ----------------------------------------------------------------------------------------------


def start(host: HostProcess, config: AppConfig) -> HostProcess:
    write_local_settings(host.settings_file, {**config.values, **HOST_TIMINGS})
    return host.start()


def send(client: QueueClient, text: str) -> None:
    client.send_message(base64.b64encode(text.encode()).decode())  # the host's base64 encoding


def group_body(event_id: str, group_id: str) -> str:
    return json.dumps({"eventId": event_id, "type": "compromised", "enrollmentGroupId": group_id,
                       "occurredAt": "2026-01-05T10:00:00Z", "source": "soak-suite"})


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status(services: Services, event_id: str) -> str | None:
    record = services.journal.get(event_id)
    return None if record is None else str(record.status)


def finished(services: Services, event_id: str, expected: str) -> bool:
    """``expected`` and the group step's final attempt recorded (the worker that finishes the event records
    it right after the finish)."""
    record = services.journal.get(event_id)
    if record is None or str(record.status) != expected:
        return False
    step = next((s for s in record.steps if s.kind == GROUP_STEP), None)
    return step is not None and str(step.outcome) != "skipped"  # skipped: "batches go through the work queue"


def group_step(services: Services, event_id: str) -> Any:
    record = services.journal.get(event_id)
    assert record is not None
    return next(s for s in record.steps if s.kind == GROUP_STEP)


def bulk_successes(emu: EmulatorHandle) -> Counter[str]:
    """Devices in accepted bulk registry calls (``POST /devices`` answered 200) per hub name: the emulator
    counts registry operations per device."""
    calls = emu.admin("GET", "/counters")["calls"]
    return Counter({hub: int(ops.get("POST /devices", {}).get("200", 0)) for hub, ops in calls.items()
                    if hub.startswith("hub-")})


def make_group(emu: EmulatorHandle, group_id: str, size: int) -> tuple[list[fleet.Device], dict[str, str]]:
    """A symmetric-key group hashed over both hubs (members registered through DPS); member → hub host."""
    members = fleet.symmetric_group(emu, group_id, [f"{group_id}-m{i:03d}" for i in range(size)])
    hubs = {d.registration_id: fleet.assigned_hub(emu, d.registration_id) for d in members}
    assert len(set(hubs.values())) == 2, f"{group_id}: members on one hub only, pick another size"
    return members, hubs


def refused(emu: EmulatorHandle, devices: Iterable[fleet.Device], hubs: dict[str, str]) -> list[str]:
    """Members that can still register at DPS or send to their hub (empty when all are cut off)."""
    def problems(device: fleet.Device) -> list[str]:
        out = []
        if fleet.can_register(emu, device):
            out.append(f"{device.registration_id} registers")
        if fleet.can_send(emu, device, hubs[device.registration_id]):
            out.append(f"{device.registration_id} sends")
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [p for found in pool.map(problems, devices) for p in found]


def hub2(hubs: dict[str, str], emu: EmulatorHandle) -> set[str]:
    host = fleet.hub_hosts(emu)[1]
    return {reg for reg, hub in hubs.items() if hub == host}


# -- forged batches ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forged:
    text: str
    field: str  # a field the rejection must name


@dataclass(frozen=True)
class Target:
    """The genuine group event the forgeries lean on: its eventId, group, step index, run, batch count."""

    event_id: str
    group_id: str
    step: int
    run: int
    batches: int


def forged_batches(t: Target, victims: list[fleet.Device], hubs: dict[str, str],
                   stranger: str) -> list[Forged]:
    """Every way we could think of to make the work function touch a device its event did not emit."""
    event_id, step, run, batches = t.event_id, t.step, t.run, t.batches
    genuine = [{"eventId": event_id, "stepIndex": step, "run": run, "batch": n}
               for n in range(1, batches + 1)]
    out: list[Forged] = []
    for victim in victims:
        reg, hub = victim.registration_id, hubs[victim.registration_id]
        as_reported = {"eventId": event_id, "groupId": t.group_id, "hub": hub, "action": "delete",
                       "deviceIds": [reg]}  # issue 11, item 5
        out.append(Forged(json.dumps(as_reported), "deviceIds"))
        for ref in genuine:
            out.append(Forged(json.dumps({**ref, "deviceIds": [reg]}), "deviceIds"))
            out.append(Forged(json.dumps({**ref, "hub": hub}), "hub"))
        out.append(Forged(json.dumps({"eventId": f"{stranger}-{reg}", "type": "retired",
                                      "registrationId": reg, "occurredAt": "2026-01-05T10:00:00Z",
                                      "source": "forger"}), "type"))
    out += [
        Forged(json.dumps({**genuine[0], "action": "delete"}), "action"),
        Forged(json.dumps({**genuine[0], "eventId": stranger}), "eventId"),  # an event nobody sent
        Forged(json.dumps({**genuine[0], "batch": batches + 7}), "batch"),  # a batch never emitted
        Forged(json.dumps({**genuine[0], "run": run + 5}), "batch"),  # a run never emitted
        Forged(json.dumps({**genuine[0], "stepIndex": 0}), "batch"),  # the DPS step has no batches
        Forged(json.dumps({**genuine[0], "batch": "1; drop"}), "batch"),
        Forged(json.dumps({**genuine[0], "eventId": "x' or RowKey ne '"}), "eventId"),
        Forged(json.dumps({**genuine[0], "eventId": "../" + event_id}), "eventId"),
        Forged(json.dumps([genuine[0]]), "$"),
        Forged("deviceIds=" + victims[0].registration_id, "$"),
    ]
    return out


@pytest.mark.parametrize("size", [
    pytest.param(CI, marks=pytest.mark.soak, id="ci"),
    pytest.param(FULL, marks=[pytest.mark.soak_full, pytest.mark.timeout(1800)], id="full"),
])
def test_forged_work_batches_are_rejected_journaled_and_every_victim_still_registers_and_sends(
    size: Size, clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
    host_process: HostProcess,
) -> None:
    emu, run_id = clean_emulator, "forge-" + uuid.uuid4().hex[:8]
    group_id, event_id = f"{run_id}-grp", f"{run_id}-compromised"
    members, hubs = make_group(emu, group_id, size.members)
    victims = [fleet.individual_device(emu, f"{run_id}-victim{i}", hub=i % 2) for i in range(size.victims)]
    hubs.update({v.registration_id: fleet.assigned_hub(emu, v.registration_id) for v in victims})
    start(host_process, app_config)
    lifecycle = queue(app_config.storage, app_config.lifecycle_queue)
    work = queue(app_config.storage, app_config.work_queue)
    work_poison = queue(app_config.storage, app_config.work_queue + "-poison")

    send(lifecycle, group_body(event_id, group_id))
    wait_until(lambda: finished(app_services, event_id, "completed"), size.timeout, "the group event")
    step = group_step(app_services, event_id)
    emission = app_services.journal.latest_emission(event_id, step.index)
    assert emission is not None
    genuine = app_services.journal.batches(event_id, step.index, emission.run)
    before = bulk_successes(emu)
    assert before["hub-1"], before
    assert before["hub-2"], before  # the genuine batches, counted

    target = Target(event_id, group_id, step.index, emission.run, len(genuine))
    forged = forged_batches(target, victims, hubs, stranger=f"{run_id}-never-sent")
    for message in forged:
        send(work, message.text)
    send(work, json.dumps({"eventId": event_id, "stepIndex": step.index, "run": emission.run, "batch": 1}))

    def rejections() -> dict[str, list[Any]]:
        return {r.body: list(r.errors) for r in app_services.journal.iter_rejections()}

    wait_until(lambda: all(m.text in rejections() for m in forged), size.timeout,
               "every forged batch journaled", interval=1.0)
    time.sleep(3)  # room for a (wrong) redelivery or poisoning
    journaled = rejections()
    for message in forged:
        errors = journaled[message.text]
        assert all(e.get("field") and e.get("reason") for e in errors), errors
        assert message.field in {e["field"] for e in errors}, (message.text, errors)
    assert len(journaled) == len({m.text for m in forged}), "each forgery journaled once, the replay never"
    assert work_poison.get_queue_properties().approximate_message_count == 0
    assert bulk_successes(emu) == before, "a forged or replayed batch reached a hub"
    final = group_step(app_services, event_id)
    assert (final.outcome, final.after) == (step.outcome, step.after), "the counts were rewritten"
    assert final.after.startswith(f"batches {len(genuine)}: changed={size.members} unchanged=0 failed=0")
    assert journal_rows(app_config.storage, app_config.prefix).done_twice() == []
    for victim in victims:
        assert working(emu, victim, hubs[victim.registration_id]) == [], victim.registration_id
        assert fleet.enrollment_status(emu, victim.registration_id) == "enabled"
        assert fleet.hub_status(emu, victim.registration_id, hubs[victim.registration_id]) == "enabled"
    assert refused(emu, members, hubs) == []
    host_process.stop()
    assert host_loop_problems(host_process.output()) == []


# -- a poisoned batch, then recovery ------------------------------------------------------------------------


def _take_the_last_delivery_and_die(host: HostProcess, work: QueueClient, log_from: int) -> int:
    """After the batch's fourth failed delivery, kill the host before it fetches the fifth, and take that
    fifth delivery here without ever settling it: what an instance killed during its last delivery leaves.
    Returns the dequeue count of the delivery taken."""
    wait_until(lambda: FOURTH_FAILURE.search(host.output()[log_from:]), 120, "the fourth failed delivery",
               interval=0.05)
    host.kill()
    taken = wait_until(lambda: list(work.receive_messages(max_messages=32, visibility_timeout=1)), 30,
                       "the batch message to become visible")
    assert len(taken) == 1, [m.content for m in taken]
    return int(taken[0].dequeue_count)


@pytest.mark.soak
def test_a_poisoned_batch_fails_or_holds_its_event_and_a_re_send_applies_exactly_the_missing_devices(
    clean_emulator: EmulatorHandle, app_config: AppConfig, app_services: Services,
    host_process: HostProcess,
) -> None:
    emu, run_id = clean_emulator, "poison-" + uuid.uuid4().hex[:8]
    group_a, group_b = f"{run_id}-a", f"{run_id}-b"
    event_a, event_b = f"{group_a}-compromised", f"{group_b}-compromised"
    members_a, hubs_a = make_group(emu, group_a, CI.members)
    members_b, hubs_b = make_group(emu, group_b, CI.members)
    siblings = [fleet.individual_device(emu, f"{run_id}-sibling{i}", hub=i % 2) for i in range(2)]
    sibling_hubs = {s.registration_id: fleet.assigned_hub(emu, s.registration_id) for s in siblings}
    lifecycle = queue(app_config.storage, app_config.lifecycle_queue)
    work = queue(app_config.storage, app_config.work_queue)
    work_poison = queue(app_config.storage, app_config.work_queue + "-poison")
    start(host_process, app_config)
    emu.admin("PUT", "/faults", json=HUB2_BULK_FAILS)
    try:
        # A: the hub-2 batch fails five deliveries; the last one settles it failed, the event fails with it
        send(lifecycle, group_body(event_a, group_a))
        wait_until(lambda: finished(app_services, event_a, "failed"), 120, "event A to fail")
        missing_a = hub2(hubs_a, emu)
        record_a = app_services.journal.get(event_a)
        assert record_a is not None
        assert record_a.error == (f"{len(missing_a)} devices in 1 batches not purged; re-send the event to "
                                  "resume them")
        assert work_poison.get_queue_properties().approximate_message_count == 0, "settled, not poisoned"

        # B: the hub-2 batch's last delivery dies with its instance; the host poisons it unrun
        log_from = len(host_process.output())
        send(lifecycle, group_body(event_b, group_b))
        assert _take_the_last_delivery_and_die(host_process, work, log_from) == 5
        host_process.start()
        wait_until(lambda: work_poison.get_queue_properties().approximate_message_count == 1, 30,
                   "the batch in the work poison queue")
        assert status(app_services, event_b) == "in_progress"
        report = run_audit(wiring.build_audit(app_services).ports, now=datetime.now(UTC) + timedelta(hours=2))
        found = {(str(f.check), f.resource) for f in report.findings}
        assert ("EVENT_STUCK", event_b) in found, found
        assert ("POISON_MESSAGES_PENDING", app_config.work_queue + "-poison") in found, found
    finally:
        emu.admin("PUT", "/faults", json={})

    # nothing the fault blocked was applied; everything else was
    statuses = {**fleet.hub_statuses(emu, 0), **fleet.hub_statuses(emu, 1)}
    missing_b = hub2(hubs_b, emu)
    for reg in [*hubs_a, *hubs_b]:
        assert statuses[reg] == ("enabled" if reg in missing_a | missing_b else "disabled"), reg

    # recovery: re-send each event; exactly the missing batches are applied
    before = bulk_successes(emu)
    send(lifecycle, group_body(event_b, group_b))
    send(lifecycle, group_body(event_a, group_a))
    for event_id in (event_a, event_b):
        wait_until(lambda e=event_id: finished(app_services, e, "completed"), 120, f"{event_id} to complete")
    applied = bulk_successes(emu) - before
    # the emulator counts a bulk call once per device: exactly the missing devices, none on hub-1
    assert applied == Counter({"hub-2": len(missing_a | missing_b)}), applied
    for event_id, members in ((event_a, members_a), (event_b, members_b)):
        step = group_step(app_services, event_id)
        assert step.after == f"batches 2: changed={len(members)} unchanged=0 failed=0", step.after

    # an operator replays the poisoned message: the batch is settled, nothing changes
    poisoned = list(work_poison.receive_messages(max_messages=32, visibility_timeout=30))
    assert len(poisoned) == 1
    work.send_message(poisoned[0].content)
    work_poison.delete_message(poisoned[0])
    wait_until(lambda: work.get_queue_properties().approximate_message_count == 0, 30, "the replay consumed")
    time.sleep(2)
    assert bulk_successes(emu) - before == applied

    assert journal_rows(app_config.storage, app_config.prefix).done_twice() == []
    assert refused(emu, members_a, hubs_a) == []
    assert refused(emu, members_b, hubs_b) == []
    for sibling in siblings:
        assert working(emu, sibling, sibling_hubs[sibling.registration_id]) == [], sibling.registration_id
    host_process.stop()
    assert host_loop_problems(host_process.output()) == []  # retried 503s only, logged and redelivered

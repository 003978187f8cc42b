"""The scripted demo of ``python -m devhost.stack up --demo``: fleet table, events, journal outcomes, table.

Sends the script's events through the lifecycle queue (as the outside world would), waits for each phase in
the journal, sends one malformed event (it must be recorded as rejected), then probes the fleet again
(:mod:`devhost.fleet_probe`: through Microsoft's Node.js device SDK when the stack's emulator runs on standard
ports, the TPM device and the fallback mode through the Python device client; docs/local-run.md). Runs
against a started stack (``RunningStack``: ``devhost.stack.Stack`` is one);
a second run in the same state dir re-seeds a fresh fleet first, so the "before" table is always clean.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost import demo_fleet
from devhost.fleet_probe import FleetProbe, format_table
from shared.adapters.journal_tables import TableJournal

DEMO_TIMEOUT_S = 90.0
_FINISHED = ("completed", "failed", "refused", "rejected")


def _say(text: str) -> None:
    """Demo output on stdout (event IDs, device IDs, statuses: never a secret)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _event(run: str, number: int, kind: str, **fields: Any) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"eventId": f"demo-{run}-{number:02d}-{kind}", "type": kind, "occurredAt": now,
            "source": "devhost-demo", **fields}


def demo_script(run: str, state_dir: Path) -> list[list[dict[str, Any]]]:
    """Two phases: revocations first; then ``found`` (needs the completed ``lost``) and a group event."""
    leaf = demo_fleet.leaf_pem(state_dir, "sensor-a-001")
    first = [
        _event(run, 1, "lost", registrationId="sensor-a-001", certificate=leaf, note="demo: lost on site A"),
        _event(run, 2, "stolen", registrationId="gateway-tpm-004"),
        _event(run, 3, "sold", registrationId="camera-x509-005"),
        _event(run, 4, "moved", registrationId="kiosk-sk-006"),
        _event(run, 5, "lost", registrationId="thermo-sk-003"),
        _event(run, 6, "lost", registrationId="tracker-007"),
    ]
    second = [_event(run, 7, "found", registrationId="tracker-007"),
              _event(run, 8, "compromised", enrollmentGroupId="line-a")]
    return [first, second]


class RunningStack(Protocol):
    """What the demo needs of a started stack. Declared here, not imported: ``devhost.stack`` runs the demo,
    so the demo must not depend on it (and ``stack`` often runs as ``__main__``, a second module object)."""

    state_dir: Path
    config: dict[str, Any]
    values: dict[str, str]
    fleet: list[demo_fleet.FleetDevice]

    def reseed(self) -> None:
        """Empty DPS and the hubs, then seed a fresh demo fleet."""


MALFORMED = {"eventId": "", "type": "misplaced", "registrationID": "sensor-a-001", "occurredAt": "yesterday",
             "source": "devhost-demo"}


def _wait(journal: TableJournal, event_ids: list[str], deadline: float) -> dict[str, str]:
    """Poll the journal until every event has finished (or the deadline passes); eventId -> status."""
    status = dict.fromkeys(event_ids, "not seen")
    while time.monotonic() < deadline:
        for event_id in event_ids:
            if status[event_id] not in _FINISHED:
                record = journal.get(event_id)
                status[event_id] = record.status if record else "not seen"
        if all(value in _FINISHED for value in status.values()):
            break
        time.sleep(0.5)
    return status


def run_demo(stack: RunningStack) -> int:
    """Before table, scripted events through the lifecycle queue, after table; 0 when all completed."""
    marker = stack.state_dir / "demo" / "ran"
    if marker.exists():
        _say("demo ran before in this state dir: re-seeding a fresh fleet")
        stack.reseed()
    probe = FleetProbe(stack.config, stack.state_dir)
    _say("\nfleet BEFORE the events:\n" + format_table(probe.table(stack.fleet)))
    storage = stack.values["AzureWebJobsStorage"]
    prefix = stack.values.get("JOURNAL_TABLE_PREFIX", "")
    journal = TableJournal.from_connection_string(storage, prefix=prefix)
    queue_name = stack.values.get("LIFECYCLE_QUEUE") or "device-lifecycle"
    queue = QueueClient.from_connection_string(storage, queue_name)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    rejected_before = sum(1 for _ in journal.iter_rejections())
    run = time.strftime("%H%M%S") + secrets.token_hex(2)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    results: dict[str, tuple[dict[str, Any], str]] = {}
    for phase in demo_script(run, stack.state_dir):
        for event in phase:
            body = json.dumps(event)
            (stack.state_dir / "demo" / f"{event['eventId']}.json").parent.mkdir(parents=True, exist_ok=True)
            (stack.state_dir / "demo" / f"{event['eventId']}.json").write_text(body, encoding="utf-8")
            queue.send_message(base64.b64encode(body.encode()).decode())
            _say(f"sent {event['type']:<11} {event.get('registrationId') or event.get('enrollmentGroupId')}")
        status = _wait(journal, [e["eventId"] for e in phase], deadline)
        results.update({e["eventId"]: (e, status[e["eventId"]]) for e in phase})
    queue.send_message(base64.b64encode(json.dumps(MALFORMED).encode()).decode())
    _say("sent malformed event (type 'misplaced', misspelt registrationID)")
    while time.monotonic() < deadline and sum(1 for _ in journal.iter_rejections()) <= rejected_before:
        time.sleep(0.5)
    rejected = sum(1 for _ in journal.iter_rejections()) - rejected_before
    _say("\nevent outcomes (journal):")
    for event, state in results.values():
        _say(f"  {event['eventId']:<34} {event['type']:<11} "
              f"{event.get('registrationId') or event.get('enrollmentGroupId'):<16} {state}")
    _say(f"  malformed event: {'rejected (recorded with field errors)' if rejected > 0 else 'NOT rejected'}")
    _say("\nfleet AFTER the events:\n" + format_table(probe.table(stack.fleet)))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    ok = rejected > 0 and all(state == "completed" for _, state in results.values())
    _say("demo finished" + ("" if ok else " WITH PROBLEMS (see outcomes above)"))
    return 0 if ok else 1

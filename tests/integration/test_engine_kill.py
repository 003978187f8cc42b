"""Crash safety with a real killed process: a group event applied in a subprocess is SIGKILLed mid-way (after
the journal shows the DPS step done and the first bulk call reached a hub), then re-run in-process. The plan
completes, the DPS step is not applied again, and no device is changed twice (journal + emulator state). The
re-run is the very event the child applied (same body: another body under the eventId is a conflict), and it
gets the group's target lease only once the dead child's lease expired."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.journal_tables import TableJournal
from shared.events import parse_event
from tests.integration import engine_fleet as fleet
from unprovision.group.inprocess import GroupWork
from unprovision.throttle import HubBudget, InMemoryRateLimiter

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GROUP = "grp-kill"
DEVICES = 400
# The killed child never releases its lease on the group: the re-run waits until it expires (the product's
# 300 s would make this test wait five minutes; the re-run's own wait, 15 s, is longer than this).
CHILD_LEASE_TTL = 5.0
_SUMMARY = re.compile(r"changed=(\d+) unchanged=(\d+) failed=(\d+)")


def child_env(emu: Any, journal_prefix: str, storage: str, event: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "REQUESTS_CA_BUNDLE": emu.ca_bundle, "UNPROV_DPS": emu.dps_connection_string,
            "UNPROV_HUBS": json.dumps({h["hostName"]: h["connectionString"] for h in emu.hubs}),
            "UNPROV_STORAGE": storage, "UNPROV_JOURNAL_PREFIX": journal_prefix,
            "UNPROV_EVENT": json.dumps(event), "UNPROV_PAGE_SIZE": "50", "UNPROV_IN_FLIGHT": "1",
            "UNPROV_OPS_PER_MINUTE": "1000000", "UNPROV_LEASE_TTL": str(CHILD_LEASE_TTL)}


def bulk_posts(emu: Any) -> int:
    calls = fleet.counters(emu)
    return sum(sum(by_status.values()) for hub in emu.hubs
               for op, by_status in calls.get(hub["name"], {}).items() if op.startswith("POST /devices")
               and "query" not in op)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def disabled_count(emu: Any) -> int:
    statuses = [fleet.hub_statuses(emu, i) for i in range(len(emu.hubs))]
    return sum(1 for hub in statuses for s in hub.values() if s == "disabled")


def test_a_killed_apply_resumes_and_completes_without_applying_anything_twice(
        clean_emulator: Any, azurite: Any, table_journal: TableJournal) -> None:
    emu = clean_emulator
    fleet.seed_large_group(emu, GROUP, DEVICES)
    emu.admin("PUT", "/latency", json={"latencyMs": 120, "jitterMs": 0})
    event = {"eventId": "e-kill", "type": "compromised", "enrollmentGroupId": GROUP,
             "occurredAt": fleet.OCCURRED_AT, "source": "kill-test"}
    prefix = table_journal._events.table_name.removesuffix("journal")  # the fixture's own tables
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration._apply_child"], cwd=ROOT,
        env=child_env(emu, prefix, azurite.connection_string, event),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _step_done(table_journal, 0), 30, "the DPS step in the journal")
        wait_until(lambda: bulk_posts(emu) >= 1, 30, "the first bulk call")
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    emu.admin("PUT", "/latency", json={"latencyMs": 0, "jitterMs": 0})
    time.sleep(0.3)  # let a request the child had in flight land before counting
    killed = table_journal.get("e-kill")
    assert killed is not None
    assert killed.status == "in_progress"
    disabled_at_kill = disabled_count(emu)
    assert 0 < disabled_at_kill < DEVICES, "the kill should land in the middle of the purge"
    group_puts = _group_writes(emu)
    dps_step_at = next(s.at for s in killed.steps if s.index == 0)

    engine = fleet.engine(emu, table_journal, group_work=unthrottled())
    outcome = engine.apply(parse_event(event))  # the same event the child applied: same body, same eventId
    assert outcome.status == "completed", outcome.error
    assert disabled_count(emu) == DEVICES
    assert _group_writes(emu) == group_puts, "the group was written again on resume"
    record = table_journal.get("e-kill")
    assert record is not None
    steps = {s.index: s for s in record.steps}
    assert steps[0].at == dps_step_at  # the DPS step kept its one record
    counts = _SUMMARY.search(steps[1].after or "")
    assert counts is not None
    changed, unchanged, failed = (int(c) for c in counts.groups())
    assert (changed, unchanged, failed) == (DEVICES - disabled_at_kill, disabled_at_kill, 0)


def unthrottled() -> GroupWork:
    """The fixture's emulator does not throttle; the default S1 budget would make the re-run last minutes."""
    return GroupWork(limiter=InMemoryRateLimiter(default=HubBudget(ops_per_minute=1e6, burst=1e6)))


def _step_done(journal: TableJournal, index: int) -> bool:
    record = journal.get("e-kill")
    return record is not None and any(s.index == index and s.outcome == "done" for s in record.steps)


def _group_writes(emu: Any) -> int:
    calls = fleet.counters(emu).get("dps", {})
    return sum(sum(v.values()) for op, v in calls.items() if op.startswith("PUT /enrollmentGroups"))

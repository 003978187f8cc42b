"""End to end: the real function_app.py run by the local Functions host (devhost), Azurite and the emulator.

Events go onto the lifecycle queue as the asset tracker would put them (base64); outcomes are checked through
the real SDKs (hub identities) and the emulator's device endpoint (can the device register again?).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.host import Host, HostOptions
from shared.adapters.poison_queue import StoragePoisonQueue
from shared.adapters.queues import StorageQueueSender
from shared.adapters.settings import emulator_values
from shared.ports import EventRecord
from shared.retry import retries_off
from tests.functional.fleet import Fleet, payload
from tests.support.azurite_fixtures import unique_prefix
from unprovision import wiring
from unprovision.audit.run import run_audit

APP_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("completed", "failed", "refused")


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class App:
    """A running host plus what the tests need to talk to it."""

    def __init__(self, host: Host, settings: dict[str, str], storage: str) -> None:
        self.host, self.settings, self.storage = host, settings, storage
        self.queue = StorageQueueSender(storage, settings["LIFECYCLE_QUEUE"])

    def send(self, text: str) -> None:
        self.queue.send_text(text)

    def record(self, event_id: str) -> EventRecord | None:
        return wiring.services().journal.get(event_id)

    def finished(self, event_id: str, timeout: float = 30.0) -> EventRecord:
        def done() -> EventRecord | None:
            record = self.record(event_id)
            return record if record is not None and record.status in TERMINAL else None
        return wait_for(done, timeout, f"event {event_id}")  # type: ignore[no-any-return]

    def poison(self) -> StoragePoisonQueue:
        name = f"{self.settings['LIFECYCLE_QUEUE']}-poison"
        return StoragePoisonQueue.from_connection_string(self.storage, name)


@pytest.fixture
def app(clean_emulator: Any, azurite: Any, tmp_path: Path) -> Iterator[App]:
    config = tmp_path / "emulator.json"
    config.write_text(json.dumps(clean_emulator.config), encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    settings = {
        **emulator_values(config, azurite.connection_string),
        "AzureWebJobsStorage": azurite.connection_string,
        "LIFECYCLE_QUEUE": f"e2e-lc-{suffix}",
        "WORK_QUEUE": f"e2e-wk-{suffix}",
        "JOURNAL_TABLE_PREFIX": unique_prefix(),
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.5",
    }
    wiring.reset_services()
    host = Host(HostOptions(app_root=APP_ROOT, settings_file=tmp_path / "no-local-settings.json", port=0,
                            state_dir=tmp_path / "state", extra_settings=settings,
                            dev_storage=azurite.connection_string, run_timers=False)).start()
    try:
        yield App(host, settings, azurite.connection_string)
    finally:
        host.stop()
        wiring.reset_services()


def test_lifecycle_events_on_the_queue_bring_the_fleet_to_the_expected_state(
        app: App, clean_emulator: Any) -> None:
    fleet = Fleet(clean_emulator.config)
    lost, sold, moved = (fleet.individual(n) for n in ("meter-lost", "meter-sold", "meter-moved"))
    line_a = fleet.group_members("line-a", 3)
    line_b = fleet.group_members("line-b", 2)
    for name in ("lost-individual.json", "sold-individual.json", "moved-individual.json",
                 "compromised-group.json", "lost-group-member.json"):
        app.send(payload(name))
    for event_id in ("fa-lost-1", "fa-sold-1", "fa-moved-1", "fa-compromised-1", "fa-lost-member-1"):
        assert app.finished(event_id).status == "completed", event_id
    assert (fleet.hub_status(lost), fleet.registration(lost)) == ("disabled", "disabled")
    for gone in (sold, moved):
        assert (fleet.hub_status(gone), fleet.registration(gone)) == (None, "unauthorized")
    assert [fleet.hub_status(d) for d in line_a] == ["disabled"] * 3
    assert all(fleet.registration(d) == "disabled" for d in line_a)  # the group itself is disabled
    member_lost, member_kept = line_b[1], line_b[0]
    assert fleet.hub_status(member_lost) == "disabled"
    assert fleet.registration(member_lost) != "assigned"  # blocked by a disabled individual enrollment
    assert (fleet.hub_status(member_kept), fleet.registration(member_kept)) == ("enabled", "assigned")

    app.send(payload("found-after-lost.json"))
    assert app.finished("fa-found-1").status == "completed"
    assert (fleet.hub_status(lost), fleet.registration(lost)) == ("enabled", "assigned")


def test_malformed_message_is_journaled_and_not_retried_and_http_needs_a_key(app: App) -> None:
    app.send(payload("invalid-event.json"))
    journal: Any = wiring.services().journal
    rejections = wait_for(lambda: list(journal.iter_rejections(event_id="fa-invalid-1")), what="rejection")
    assert {"type", "occurredAt", "registrationID"} <= {e["field"] for e in rejections[0].errors}
    time.sleep(1.5)  # room for a (wrong) redelivery
    assert len(list(journal.iter_rejections(event_id="fa-invalid-1"))) == 1
    assert app.poison().count() == 0

    http = app.host.http
    assert http is not None
    base = http.base_url
    assert requests.post(f"{base}/unprovision", data=payload("lost-individual.json"), timeout=10) \
        .status_code == 401
    assert requests.get(f"{base}/openapi.json", timeout=10).status_code == 200
    keys = app.host.keys
    assert keys is not None
    answer = requests.post(f"{base}/unprovision", data=payload("invalid-event.json"), timeout=10,
                           headers={"x-functions-key": keys.function_key})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid event"


def test_message_that_keeps_failing_lands_in_the_poison_queue_after_five_tries(
        app: App, clean_emulator: Any) -> None:
    device = Fleet(clean_emulator.config).individual("meter-lost")
    clean_emulator.admin("PUT", "faults", {"rate5xx": 1.0, "services": ["dps"]})
    try:
        with retries_off():  # each delivery fails at once; the host's redelivery is what is under test
            app.send(payload("lost-individual.json"))
            poison = app.poison()
            wait_for(lambda: poison.count() >= 1, timeout=60, what="poison message")
    finally:
        clean_emulator.admin("PUT", "faults", {})
    [message] = app.poison().peek(5)
    assert json.loads(message.body)["eventId"] == "fa-lost-1"
    record = app.record("fa-lost-1")
    assert record is None or record.status not in TERMINAL
    assert Fleet(clean_emulator.config).hub_status(device) == "enabled"
    report = run_audit(wiring.build_audit(wiring.services()).ports, now=datetime.now(UTC))
    assert "POISON_MESSAGES_PENDING" in {str(f.check) for f in report.findings}

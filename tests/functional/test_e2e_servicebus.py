"""End to end over Service Bus: the real function_app.py in the local host, events and outcomes on the
emulator's AMQP stand-in, sent and read with the unmodified azure-servicebus SDK (through the
``unprovision send --servicebus`` / ``unprovision outcomes`` CLIs and directly). No mock at the Service Bus
boundary.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage

from devhost.host import Host, HostOptions
from shared.adapters.servicebus_connect import client_from_connection_string
from shared.adapters.settings import emulator_values
from shared.ports import EventRecord
from tests.functional.fleet import Device, Fleet, payload
from tests.support.azurite_fixtures import unique_prefix
from unprovision import cli, wiring

APP_ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class SbApp:
    def __init__(self, host: Host, settings: dict[str, str], emulator: Any) -> None:
        self.host, self.settings, self.emulator = host, settings, emulator
        self.broker = emulator.emulator.servicebus.broker
        self.queue, self.outcomes = settings["SERVICEBUS_QUEUE"], settings["OUTCOME_QUEUE_OR_TOPIC"]

    def send(self, text: str, **properties: Any) -> None:
        with client_from_connection_string(self.settings["SERVICEBUS_CONNECTION"]) as client, \
                client.get_queue_sender(self.queue) as sender:
            sender.send_messages(ServiceBusMessage(text, **properties))

    def counts(self, entity: str) -> dict[str, int]:
        return dict(self.broker.describe().get(entity.lower(), {}))

    def finished(self, event_id: str) -> EventRecord:
        def done() -> EventRecord | None:
            record = wiring.services().journal.get(event_id)
            return record if record is not None and record.status in ("completed", "failed", "refused") \
                else None
        return wait_for(done, 30, f"event {event_id}")  # type: ignore[no-any-return]

    def hub_calls(self) -> int:
        """Registry writes (PUT/DELETE on device identities) counted by the emulator, on every hub."""
        counters = self.emulator.admin("GET", "counters")
        return sum(n for service, calls in counters["calls"].items() if service.startswith("hub")
                   for route, statuses in calls.items() if route.split(" ")[0] in ("PUT", "DELETE")
                   and "/devices/" in route for n in statuses.values())


SbAppFactory = Callable[..., SbApp]


@pytest.fixture
def start_sb_app(clean_emulator: Any, azurite: Any, tmp_path: Path) -> Iterator[SbAppFactory]:
    """Start the real app in the local host with its Service Bus trigger and outcome queue on the stand-in;
    keyword arguments are extra settings."""
    hosts: list[Host] = []

    def start(**extra: str) -> SbApp:
        config = tmp_path / "emulator.json"
        config.write_text(json.dumps(clean_emulator.config), encoding="utf-8")
        sb = clean_emulator.config["serviceBus"]
        suffix = uuid.uuid4().hex[:8]
        settings = {
            **emulator_values(config, azurite.connection_string),
            "AzureWebJobsStorage": azurite.connection_string,
            "LIFECYCLE_QUEUE": f"sb-lc-{suffix}",
            "WORK_QUEUE": f"sb-wk-{suffix}",
            "JOURNAL_TABLE_PREFIX": unique_prefix(),
            "SERVICEBUS_CONNECTION": sb["connectionString"],
            "SERVICEBUS_QUEUE": f"lifecycle-{suffix}",
            "OUTCOME_SERVICEBUS_CONNECTION": sb["connectionString"],
            "OUTCOME_QUEUE_OR_TOPIC": f"outcomes-{suffix}",
            "SERVICEBUS_CA_BUNDLE": sb["caBundle"],
            **extra,
        }
        wiring.reset_services()
        host = Host(HostOptions(app_root=APP_ROOT, settings_file=tmp_path / "no-local-settings.json", port=0,
                                state_dir=tmp_path / "state", extra_settings=settings,
                                dev_storage=azurite.connection_string, run_timers=False,
                                serve_http=False))
        hosts.append(host)
        host.start()
        assert "lifecycle_servicebus" in host.sb_pumps
        return SbApp(host, settings, clean_emulator)

    try:
        yield start
    finally:
        for host in hosts:
            host.stop()
        wiring.reset_services()


@pytest.fixture
def sb_app(start_sb_app: SbAppFactory) -> SbApp:
    return start_sb_app()


def _can_send(emulator: Any, device: Device) -> int:
    hosts = [hub["hostName"].lower() for hub in emulator.hubs]
    index = hosts.index(str(device.hub).lower())
    return int(emulator.send_telemetry(device.device_id, index=index, key=device.key).status_code)


def test_event_sent_with_the_cli_revokes_the_device_and_an_outcome_arrives(
    sb_app: SbApp, clean_emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = Fleet(clean_emulator.config)
    device = fleet.individual("meter-lost")
    assert (fleet.registration(device), _can_send(clean_emulator, device)) == ("assigned", 204)
    event = tmp_path / "lost.json"
    event.write_text(payload("lost-individual.json"), encoding="utf-8")

    assert cli.main(["send", "--servicebus", str(event)]) == 0
    assert sb_app.finished("fa-lost-1").status == "completed"
    assert (fleet.registration(device), fleet.hub_status(device)) == ("disabled", "disabled")
    assert _can_send(clean_emulator, device) == 401  # refused at the hub's device endpoint
    wait_for(lambda: sb_app.counts(sb_app.queue).get("completed") == 1, what="trigger message completed")

    capsys.readouterr()
    outcomes: list[dict[str, Any]] = []

    def read() -> bool:
        assert cli.main(["outcomes", "--max", "10", "--wait", "1"]) == 0
        outcomes.extend(json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip())
        return bool(outcomes)

    wait_for(read, 30, "an outcome message")
    [outcome] = outcomes
    body = json.loads(outcome["body"])
    assert (body["eventId"], body["correlationId"], outcome["correlationId"]) == (
        "fa-lost-1", "corr-lost-1", "corr-lost-1")
    assert outcome["messageId"].startswith("fa-lost-1:")


def test_malformed_bodies_are_journaled_and_completed_never_retried(sb_app: SbApp) -> None:
    sb_app.send(payload("invalid-event.json"), message_id="bad-1")
    sb_app.send(b"\xff\xfe not even UTF-8", message_id="bad-2")
    journal: Any = wiring.services().journal
    rejections = wait_for(lambda: list(journal.iter_rejections(event_id="fa-invalid-1")), what="rejection")
    assert {"type", "occurredAt", "registrationID"} <= {e["field"] for e in rejections[0].errors}
    wait_for(lambda: sb_app.counts(sb_app.queue).get("completed") == 2, what="both messages completed")
    time.sleep(1.5)  # room for a (wrong) redelivery
    assert len(list(journal.iter_rejections(event_id="fa-invalid-1"))) == 1
    assert sb_app.counts(sb_app.queue)["active"] == 0
    assert sb_app.counts(f"{sb_app.queue}/$deadletterqueue")["active"] == 0


def _steps(event_id: str) -> list[tuple[int, str, str]]:
    record = wiring.services().journal.get(event_id)
    assert record is not None
    assert record.status == "completed"
    return [(s.index, s.kind, s.outcome) for s in record.steps]


def test_a_re_sent_event_is_applied_once(sb_app: SbApp, clean_emulator: Any) -> None:
    fleet = Fleet(clean_emulator.config)
    device = fleet.individual("meter-lost")
    sb_app.send(payload("lost-individual.json"), message_id="m-1")
    assert sb_app.finished("fa-lost-1").status == "completed"
    wait_for(lambda: sb_app.counts(sb_app.queue).get("completed") == 1, what="first delivery completed")
    writes, steps = sb_app.hub_calls(), _steps("fa-lost-1")

    sb_app.send(payload("lost-individual.json"), message_id="m-1")  # the same message again
    wait_for(lambda: sb_app.counts(sb_app.queue).get("completed") == 2, what="second delivery completed")
    assert _steps("fa-lost-1") == steps
    assert sb_app.hub_calls() == writes  # nothing applied a second time
    assert fleet.hub_status(device) == "disabled"


def test_a_message_redelivered_after_its_lock_ran_out_is_applied_once(
    start_sb_app: SbAppFactory, clean_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A lock shorter than the invocation and no renewal: the broker hands the message out again while (or
    # after) the first delivery applies it, and the first delivery's complete fails (lock lost).
    no_renewal = {"AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration": "00:00:00"}
    sb_app = start_sb_app(**no_renewal)
    sb_app.broker.configure(sb_app.queue, lock_duration=0.5)
    fleet = Fleet(clean_emulator.config)
    device = fleet.individual("meter-lost")
    clean_emulator.admin("PUT", "latency", {"latencyMs": 400})  # every DPS / hub call now outlasts the lock
    caplog.set_level(logging.INFO, logger="unprovision.triggers.servicebus")
    try:
        sb_app.send(payload("lost-individual.json"), message_id="m-1")
        assert sb_app.finished("fa-lost-1").status == "completed"
    finally:
        clean_emulator.admin("PUT", "latency", {"latencyMs": 0})
    wait_for(lambda: sb_app.counts(sb_app.queue).get("completed") == 1, 60, "a delivery completed")
    attempts = [int(m.group(1)) for r in caplog.records if r.name == "unprovision.triggers.servicebus"
                if (m := re.search(r"attempt=(\d+)", r.getMessage()))]
    assert max(attempts) >= 2, attempts  # it was delivered again
    assert sb_app.counts(sb_app.queue)["active"] == 0
    assert sb_app.counts(f"{sb_app.queue}/$deadletterqueue")["active"] == 0
    assert [kind for _, kind, _ in _steps("fa-lost-1")] == ["EnrollmentDisabled", "HubIdentityDisabled"]
    assert fleet.hub_status(device) == "disabled"
    assert sb_app.hub_calls() == 1  # one registry write: the identity disabled once

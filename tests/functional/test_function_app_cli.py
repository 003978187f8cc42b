"""``python -m unprovision apply | send | status | pending`` against the emulator and Azurite (cli.main)."""

from __future__ import annotations

import argparse
import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.adapters.queues import QUEUE_API_VERSION
from shared.ports import PendingHubStep
from tests.functional.fleet import PAYLOADS, Fleet
from tests.support.azurite_fixtures import unique_prefix
from unprovision import wiring
from unprovision.cli import main
from unprovision.commands.apply import load_settings


@pytest.fixture
def env(clean_emulator: Any, azurite: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings as an operator would have them: storage in the environment, the emulator's emulator.json."""
    config = tmp_path / "emulator.json"
    config.write_text(json.dumps(clean_emulator.config), encoding="utf-8")
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("JOURNAL_TABLE_PREFIX", unique_prefix())
    monkeypatch.setenv("LIFECYCLE_QUEUE", f"cli-{uuid.uuid4().hex[:8]}")
    for name in ("JOURNAL_CONNECTION", "DPS_CONNECTION_STRING", "IOTHUB_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    return config


def test_apply_dry_run_prints_the_plan_and_changes_nothing(
        env: Path, clean_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    device = Fleet(clean_emulator.config).individual("meter-lost")
    code = main(["apply", str(PAYLOADS / "lost-individual.json"), "--dry-run", "--emulator", str(env)])
    out = capsys.readouterr().out
    assert code == 0
    assert "EnrollmentDisabled" in out
    assert "HubIdentityDisabled" in out
    assert "Outcome of fa-lost-1: dry_run" in out
    assert Fleet(clean_emulator.config).hub_status(device) == "enabled"


def test_apply_then_status_show_the_completed_event(
        env: Path, clean_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet(clean_emulator.config)
    device = fleet.individual("meter-lost")
    assert main(["apply", str(PAYLOADS / "lost-individual.json"), "--emulator", str(env)]) == 0
    assert "Outcome of fa-lost-1: completed" in capsys.readouterr().out
    assert fleet.hub_status(device) == "disabled"
    assert main(["status", "fa-lost-1", "--emulator", str(env), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "completed"
    assert [s["kind"] for s in doc["steps"]] == ["EnrollmentDisabled", "HubIdentityDisabled"]
    assert main(["status", "never-seen", "--emulator", str(env)]) == 4


def test_pending_counts_the_steps_waiting_in_each_hubs_set(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = wiring.build_services(load_settings(argparse.Namespace(emulator=env, settings=None)))
    storm = services.engine.storm
    assert storm is not None  # the app's storage gives it a work queue: coalescing is on by default
    hub = sorted(services.registries.hubs())[0]
    storm.pending.add(PendingHubStep(hub=hub, device_id="meter-9", event_id="ev-9", step_index=1,
                                     action="disable"))
    assert main(["pending", "--emulator", str(env), "--json"]) == 0
    sets = {s["hub"]: s for s in json.loads(capsys.readouterr().out)}
    assert set(sets) == set(services.registries.hubs())
    assert sets[hub] == {"hub": hub, "waiting": 1, "inFlush": 0, "settling": 0, "byAction": {"disable": 1}}
    assert all(s["waiting"] == 0 for h, s in sets.items() if h != hub)


def test_pending_says_when_coalescing_is_off(
        env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STORM_COALESCING", "false")
    assert main(["pending", "--emulator", str(env)]) == 2
    assert "storm coalescing is off" in capsys.readouterr().err


def test_apply_group_event_purges_in_process_with_a_progress_bar(
        env: Path, clean_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet(clean_emulator.config)
    members = fleet.group_members("line-a", 3)
    assert main(["apply", str(PAYLOADS / "compromised-group.json"), "--emulator", str(env)]) == 0
    captured = capsys.readouterr()
    assert "3 devices done, 0 failed" in captured.err
    assert "Outcome of fa-compromised-1: completed" in captured.out
    assert [fleet.hub_status(m) for m in members] == ["disabled"] * 3


def test_apply_invalid_event_exits_2_with_every_field_error(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", str(PAYLOADS / "invalid-event.json"), "--emulator", str(env)]) == 2
    err = capsys.readouterr().err
    for field in ("type", "occurredAt", "registrationID"):
        assert f"  {field}:" in err


def test_send_refuses_an_invalid_event_and_posts_a_valid_one_base64(
        env: Path, azurite: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    queue = f"send-{uuid.uuid4().hex[:8]}"
    assert main(["send", str(PAYLOADS / "invalid-event.json"), "--queue", queue]) == 2
    assert "not sent" in capsys.readouterr().err
    assert main(["send", str(PAYLOADS / "lost-individual.json"), "--queue", queue]) == 0
    raw = QueueClient.from_connection_string(azurite.connection_string, queue, api_version=QUEUE_API_VERSION)
    messages = list(raw.peek_messages(max_messages=5))  # no decode policy: the stored text, base64
    assert len(messages) == 1
    body = json.loads(base64.b64decode(str(messages[0].content)))
    expected = json.loads((PAYLOADS / "lost-individual.json").read_text())
    assert body == expected

"""``python -m unprovision plan``: the bundled samples, exit codes 0 / 2 / 3, table and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unprovision.cli import main

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "samples" / "inventory.json"
EVENTS = REPO / "samples" / "events"


def run_plan(capsys, event: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["plan", str(event), "--inventory", str(INVENTORY), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("sample", "code", "kinds"),
    [
        ("lost-x509-group-member", 0, ["BlockingEnrollmentCreated", "HubIdentityDisabled"]),
        ("lost-x509-group-member-no-cert", 0, ["BlockingEnrollmentCreated", "HubIdentityDisabled"]),
        ("lost-symmetric-group-member", 0, ["BlockingEnrollmentCreated", "HubIdentityDisabled"]),
        ("stolen-tpm-individual", 0, ["EnrollmentDisabled", "HubIdentityDisabled"]),
        ("sold-x509-individual", 0, ["EnrollmentDisabled", "HubIdentityDeleted"]),
        ("retired-symmetric-individual", 0, ["EnrollmentDeleted", "HubIdentityDeleted"]),
        ("found-after-lost", 0, ["EnrollmentReenabled", "HubIdentityReenabled"]),
        ("found-after-stolen", 3, []),
        ("found-after-stolen-forced", 0, ["BlockingEnrollmentRemoved", "HubIdentityReenabled"]),
        ("compromised-group", 0, ["GroupDisabled", "GroupDevicesDisabled"]),
        ("retired-group-delete", 0, ["GroupDisabled", "GroupDevicesDeleted"]),
        ("unknown-device", 3, []),
    ],
)
def test_samples_plan_as_documented(capsys, sample, code, kinds):
    exit_code, out, _ = run_plan(capsys, EVENTS / f"{sample}.json", "--json")
    plan = json.loads(out)
    assert exit_code == code
    assert [s["kind"] for s in plan["steps"]] == kinds
    assert (plan["refusal"] is not None) == (code == 3)


def test_table_output_names_steps_hub_and_warnings(capsys):
    code, out, _ = run_plan(capsys, EVENTS / "sold-x509-individual.json")
    assert code == 0
    assert "EnrollmentDisabled" in out
    assert "hub-eu.azure-devices.net" in out
    assert "warning: enabled group(s)" in out


def test_refusal_is_printed_with_exit_code_3(capsys):
    code, out, _ = run_plan(capsys, EVENTS / "found-after-stolen.json")
    assert code == 3
    assert "REFUSED:" in out


def test_invalid_event_lists_every_field_error_with_exit_code_2(capsys):
    code, out, err = run_plan(capsys, EVENTS / "invalid-event.json")
    assert code == 2
    assert out == ""
    for name in ("eventId:", "type:", "occurredAt:", "registrationID:", "registrationId:"):
        assert name in err
    assert "Traceback" not in err


def test_missing_file_is_invalid_input(capsys, tmp_path):
    code, _, err = run_plan(capsys, tmp_path / "nope.json")
    assert code == 2
    assert "cannot read event file" in err


def test_bad_inventory_is_invalid_input(capsys, tmp_path):
    bad = tmp_path / "inventory.json"
    bad.write_text(json.dumps({"groups": [{"groupId": "g", "attestation": "carrier-pigeon"}], "device": []}))
    code = main(["plan", str(EVENTS / "lost-x509-group-member.json"), "--inventory", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert "groups.0.attestation" in err
    assert "device:" in err


def test_policy_override_from_a_file(capsys, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text('{"retired": {"hub": "disable"}}')
    code, out, _ = run_plan(
        capsys, EVENTS / "retired-symmetric-individual.json", "--json", f"--policy=@{policy}"
    )
    assert code == 0
    assert [s["kind"] for s in json.loads(out)["steps"]] == ["EnrollmentDeleted", "HubIdentityDisabled"]


def test_bad_policy_is_invalid_input(capsys):
    code, _, err = run_plan(
        capsys, EVENTS / "lost-x509-group-member.json", "--policy", '{"lost": {"hub": "x"}}'
    )
    assert code == 2
    assert "policy.lost.hub" in err


def test_module_entry_point_runs_the_make_run_command():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "unprovision",
            "plan",
            "samples/events/lost-x509-group-member.json",
            "--inventory",
            "samples/inventory.json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "BlockingEnrollmentCreated" in result.stdout


def test_inventory_file_selects_the_target_case_insensitively_with_its_history():
    from shared.events import parse_event
    from shared.inventory_file import parse_inventory, select_snapshot

    fleet = parse_inventory(INVENTORY.read_text(encoding="utf-8"))
    event = parse_event(
        {
            "eventId": "e",
            "type": "found",
            "registrationId": "TRACKER-007",
            "occurredAt": "2025-06-01T09:30:00Z",
            "source": "t",
        }
    )
    snap = select_snapshot(fleet, event)
    assert snap.enrollment is not None
    assert snap.enrollment.registration_id == "tracker-007"
    assert [h.event_type for h in snap.history] == ["lost"]
    line_b = next(g for g in snap.groups if g.group_id == "line-b")
    assert line_b.signing_certificates[0].pem is None  # info-only, as DPS reports it
    line_a = next(g for g in snap.groups if g.group_id == "line-a")
    assert line_a.signing_certificates[0].subject == "CN=Contoso Line A"

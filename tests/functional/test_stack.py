"""``python -m devhost.stack up --demo --exit``: the one-command local run, driven as a real process.

The command starts Azurite, the emulator (standard-ports mode: 443 on 127.x.y.z; we run as root here and
in CI) and the function app, seeds the demo fleet through the SDKs and the DPS device endpoint, sends the
scripted events through the lifecycle queue, and prints the fleet before and after, with live "can register?"
/ "can send?" probes made through Microsoft's Node.js device SDK (the TPM device through the Python client).
The test reads those printed tables.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from devhost import node_device
from devhost.stack import PortModeError, start_stack_emulator
from emulator.server import Emulator

REPO = Path(__file__).resolve().parents[2]
REVOKED = ("sensor-a-001", "thermo-sk-003", "gateway-tpm-004", "camera-x509-005", "kiosk-sk-006",
           "pump-008", "sensor-a-009")
STILL_WORKING = ("sensor-b-002", "sensor-r-010", "thermo-sk-011", "kiosk-sk-012", "tracker-007")
CAN_BIND_443 = os.geteuid() == 0  # root here and in CI; elsewhere the stack falls back (tested below)
NODE_SDK = "Microsoft's Node.js device SDK"


def parse_table(output: str, title: str) -> dict[str, dict[str, str]]:
    """The rows of the printed table under ``title``, keyed by registration ID, values by column name."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header = [cell.strip() for cell in lines[start + 1].split(" | ")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 3:]:
        if " | " not in line:
            break
        cells = [cell.strip() for cell in line.split(" | ")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    state = tmp_path_factory.mktemp("stack")
    command = [sys.executable, "-m", "devhost.stack", "up", "--demo", "--exit", "--state-dir", str(state),
               "--port", "0", "--settings", str(state / "local.settings.json"), "--no-timers"]
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "DPS_CONNECTION_STRING")}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    return result, state


@pytest.mark.slow
def test_demo_command_exits_cleanly_after_every_event_completed(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = demo_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo finished\n" in result.stdout
    assert "malformed event: rejected" in result.stdout
    assert result.stdout.rstrip().endswith("stopped")


@pytest.mark.slow
def test_before_the_events_every_demo_device_registers_and_sends(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    before = parse_table(demo_run[0].stdout, "fleet BEFORE")
    assert set(before) == set(REVOKED) | set(STILL_WORKING)
    assert {row["hub"] for row in before.values()} == {"hub-1", "hub-2"}
    for reg_id, row in before.items():
        assert (row["can register?"], row["can send?"]) == ("yes", "yes"), reg_id


@pytest.mark.slow
def test_after_the_events_revoked_devices_are_refused_and_the_others_still_work(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    after = parse_table(demo_run[0].stdout, "fleet AFTER")
    for reg_id in REVOKED:
        assert after[reg_id]["can register?"].startswith("no"), after[reg_id]
        assert after[reg_id]["can send?"].startswith("no"), after[reg_id]
        assert after[reg_id]["hub identity"] in ("disabled", "absent"), after[reg_id]
    for reg_id in STILL_WORKING:
        assert (after[reg_id]["can register?"], after[reg_id]["can send?"]) == ("yes", "yes"), after[reg_id]
    assert after["camera-x509-005"]["DPS enrollment"] == "deleted"  # sold: permanent
    assert after["sensor-a-001"]["DPS enrollment"] == "blocked (disabled)"  # group member: blocking entry
    assert after["pump-008"]["DPS enrollment"] == "group disabled"  # compromised line-a
    assert after["tracker-007"]["DPS enrollment"] == "enabled"  # found after lost


@pytest.mark.slow
def test_output_shows_no_secret_and_child_processes_are_gone(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, state = demo_run
    keys = json.loads((state / "devhost" / "keys.json").read_text(encoding="utf-8"))
    settings = json.loads((state / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    printed = result.stdout + result.stderr
    assert keys["functionKeys"]["default"] not in printed  # not a terminal: the hint names the keys file
    assert keys["masterKey"] not in printed
    assert "SharedAccessKey=" not in printed
    assert "AccountKey=" not in printed
    if CAN_BIND_443:  # standard-ports mode: bare 127.x.y.z addresses, no port
        assert re.match(r"HostName=127\.\d+\.\d+\.\d+;", settings["DPS_CONNECTION_STRING"])
    else:
        assert settings["DPS_CONNECTION_STRING"].startswith("HostName=127.0.0.1:")
    assert "keys.json" in result.stdout
    assert leftovers_of(state) == []


@pytest.mark.slow
@pytest.mark.skipif(not CAN_BIND_443 or node_device.missing() is not None,
                    reason="standard-ports mode needs root; the Node SDK needs make setup")
def test_the_demo_runs_the_emulator_on_standard_ports_and_probes_through_the_node_sdk(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, state = demo_run
    banner = result.stdout.split("fleet BEFORE", 1)[0]
    dps = re.search(r"^  DPS +https://(\S+)", banner, re.MULTILINE)
    assert dps is not None, banner
    assert re.fullmatch(r"127\.\d+\.\d+\.1", dps.group(1)), banner
    assert "notice:" not in banner
    assert f"devices    registered and probed through {NODE_SDK}" in banner
    hubs = re.findall(r"^  hub-\d +https://(\S+)$", banner, re.MULTILINE)
    assert len(hubs) == 2, banner
    assert all(re.fullmatch(r"127\.\d+\.\d+\.\d+", hub) for hub in hubs), hubs  # no port: as the SDK dials
    values = json.loads((state / "local.settings.json").read_text(encoding="utf-8"))["Values"]
    assert set(hubs) <= set(values["NO_PROXY"].split(","))
    after = parse_table(result.stdout, "fleet AFTER")
    # what the SDK reports, as DPS answers: the operation status "disabled", or 401 (UnauthorizedError)
    assert after["sensor-a-001"]["can register?"] == "no (disabled)"  # X.509 group member, blocking entry
    assert after["camera-x509-005"]["can register?"] == "no (unauthorized)"  # X.509 individual, deleted
    assert after["thermo-sk-003"]["can register?"] == "no (unauthorized)"  # symmetric group member
    assert after["kiosk-sk-006"]["can register?"] == "no (unauthorized)"  # symmetric individual, deleted


def test_the_stack_falls_back_to_free_ports_with_a_notice_when_443_cannot_be_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Emulator, *_: object) -> None:
        raise OSError("no free loopback address block for port 443 (root is needed to bind it)")

    monkeypatch.setattr(Emulator, "_bind_standard", refuse)
    emulator, config, notice = start_stack_emulator(tmp_path / "emulator", "off", "auto")
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", config["dps"]["hostName"])
        assert notice is not None
        assert "could not bind port 443" in notice
        assert "Python device client" in notice
        assert node_device.pick(config) == "python"
        with pytest.raises(RuntimeError, match="standard-ports"):
            node_device.pick(config, "node")
    finally:
        emulator.stop()
    with pytest.raises(PortModeError, match="443"):
        start_stack_emulator(tmp_path / "emulator", "off", "standard")


@pytest.mark.slow
def test_restart_keeps_the_seeded_fleet_and_sigterm_stops_everything(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, state = demo_run
    fleet_file = state / "fleet" / "fleet.json"
    seeded = fleet_file.stat().st_mtime_ns
    command = [sys.executable, "-m", "devhost.stack", "up", "--state-dir", str(state), "--port", "0",
               "--settings", str(state / "local.settings.json"), "--no-timers"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  curl "):
                break
        assert any("12 demo devices" in line for line in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert rest.rstrip().endswith("stopped")
    assert fleet_file.stat().st_mtime_ns == seeded  # seeded once: the marker file was kept, not rewritten
    assert leftovers_of(state) == []


@pytest.mark.slow
def test_restart_in_the_other_port_mode_seeds_a_fresh_fleet(
        demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The fleet file and DPS's assignedHub values name the old endpoints: the stack says so and re-seeds
    (here with the Python device client, as the default mode needs)."""
    _, state = demo_run
    fleet_file = state / "fleet" / "fleet.json"
    seeded = fleet_file.stat().st_mtime_ns
    command = [sys.executable, "-m", "devhost.stack", "up", "--state-dir", str(state), "--port", "0",
               "--settings", str(state / "local.settings.json"), "--no-timers", "--ports", "default"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  curl "):
                break
        shown = "".join(lines)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, shown
    if CAN_BIND_443:  # the first run used standard ports
        assert "endpoints changed since the demo fleet was seeded" in shown
        assert fleet_file.stat().st_mtime_ns != seeded
    assert re.search(r"^  DPS +https://127\.0\.0\.1:\d+", shown, re.MULTILINE), shown
    assert "registered and probed through the project's Python device client" in shown
    assert "12 demo devices" in shown
    fleet = json.loads(fleet_file.read_text(encoding="utf-8"))
    assert all(device["hub"].startswith("127.0.0.1:") for device in fleet)
    assert leftovers_of(state) == []


def leftovers_of(state: Path) -> list[psutil.Process]:
    """Processes still running with the state dir on their command line (Azurite children)."""
    return [p for p in psutil.process_iter(["cmdline"]) if str(state) in " ".join(p.info["cmdline"] or [])]

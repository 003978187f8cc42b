"""Start-up as a process (``python -m emulator``), emulator.json, TLS reuse and ``--persist`` restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from azure.iot.hub import IoTHubRegistryManager
from msrest.exceptions import HttpOperationError

from emulator.testing import start_emulator

ROOT = Path(__file__).resolve().parents[2]


def wait_for(path: Path, proc: subprocess.Popen[str], limit: float) -> float:
    started = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "emulator exited"
        assert time.monotonic() - started < limit, "emulator.json not written in time"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
def test_cli_starts_under_3_seconds_and_serves_the_sdk(tmp_path: Path, monkeypatch: Any) -> None:
    config_path = tmp_path / "emulator.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--state-dir", str(tmp_path), "--hubs", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(config_path, proc, 10)
        assert time.monotonic() - started < 3.0
        config = json.loads(config_path.read_text())
        # exactly three parts (docs/azure-behaviour.md §3.1)
        assert config["dps"]["connectionString"].count(";") == 2
        assert config["dps"]["idScope"].startswith("0ne")
        assert [h["name"] for h in config["hubs"]] == ["hub-1"]
        assert Path(config["caBundle"]).is_file()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", config["caBundle"])
        rm = IoTHubRegistryManager.from_connection_string(config["hubs"][0]["connectionString"])
        assert rm.create_device_with_sas("cli-dev", None, None, "enabled").status == "enabled"
        assert "SharedAccessKey" not in (proc.stdout.readline() if proc.stdout else "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not config_path.exists()


def test_persist_restores_devices_ports_and_keys(tmp_path: Path, monkeypatch: Any) -> None:
    first = start_emulator(tmp_path, persist=True)
    ca_before = Path(first.ca_bundle).read_bytes()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", first.ca_bundle)
    try:
        first.registry_manager(0).create_device_with_sas("kept", None, None, "disabled")
    finally:
        first.emulator.stop()
    second = start_emulator(tmp_path, persist=True)
    try:
        assert second.config["hubs"] == first.config["hubs"]  # same ports and keys when the ports are free
        assert second.config["dps"] == first.config["dps"]
        assert Path(second.ca_bundle).read_bytes() == ca_before
        assert second.registry_manager(0).get_device("kept").status == "disabled"
    finally:
        second.emulator.stop()


def test_without_persist_a_restart_starts_empty(tmp_path: Path, monkeypatch: Any) -> None:
    first = start_emulator(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", first.ca_bundle)
    first.registry_manager(0).create_device_with_sas("gone", None, None, "enabled")
    first.emulator.stop()
    second = start_emulator(tmp_path)
    try:
        with pytest.raises(HttpOperationError) as exc:
            second.registry_manager(0).get_device("gone")
        assert exc.value.response.status_code == 404
    finally:
        second.emulator.stop()

"""pytest fixture plugin: the emulator in-process, once per session (listed in tests/conftest.py).

* ``emulator`` (session): starts the emulator on free 127.0.0.1 ports in a temporary state directory with
  2 hubs, throttling off (tier ``off``, no DPS budget), and sets ``REQUESTS_CA_BUNDLE`` for the session so
  the unmodified SDKs trust it. Yields an ``EmulatorHandle``.
* ``clean_emulator`` (function): the same handle after ``reset()`` — empty DPS and hubs, knobs back to the
  start-up settings, counters cleared.

Tests that change knobs (faults, throttle, latency) should use ``clean_emulator`` so the next test starts
clean.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from emulator import sas
from emulator.iothub.device_api import CLIENT_CERT_HEADER
from emulator.options import Options
from emulator.server import Emulator


@dataclass
class EmulatorHandle:
    """What tests get: the emulator.json dict plus helpers."""

    emulator: Emulator
    config: dict[str, Any]

    @property
    def dps_connection_string(self) -> str:
        return str(self.config["dps"]["connectionString"])

    @property
    def hubs(self) -> list[dict[str, str]]:
        return list(self.config["hubs"])

    @property
    def id_scope(self) -> str:
        return str(self.config["dps"]["idScope"])

    @property
    def ca_bundle(self) -> str:
        return str(self.config["caBundle"])

    def hub_connection_string(self, index: int = 0) -> str:
        return self.hubs[index]["connectionString"]

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call the admin API (``path`` relative to ``/_emulator``); returns parsed JSON, raises on >= 400."""
        url = self.config["admin"] + "/" + path.lstrip("/")
        response = requests.request(method, url, json=json, verify=self.ca_bundle, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self) -> None:
        self.emulator.reset()

    def registry_manager(self, index: int = 0) -> Any:
        """An unmodified ``IoTHubRegistryManager`` for hub ``index`` (builds no AMQP connection)."""
        from azure.iot.hub import IoTHubRegistryManager

        return IoTHubRegistryManager.from_connection_string(self.hub_connection_string(index))

    def send_telemetry(self, device_id: str, *, index: int = 0, key: str | None = None,
                       cert_chain_pem: str | None = None, body: Any = None) -> requests.Response:
        """Device-to-cloud as a device would: device SAS from ``key`` and/or the certificate header."""
        host = self.hubs[index]["hostName"]
        headers: dict[str, str] = {}
        if key is not None:
            headers["Authorization"] = sas.make_token(f"{host}/devices/{device_id}", key)
        if cert_chain_pem is not None:
            headers[CLIENT_CERT_HEADER] = base64.b64encode(cert_chain_pem.encode()).decode()
        url = f"https://{host}/devices/{quote(device_id, safe='')}/messages/events"
        return requests.post(url, params={"api-version": "2020-09-30"}, json=body or {"ping": 1},
                             headers=headers, verify=self.ca_bundle, timeout=30)


def start_emulator(state_dir: Path, **options: Any) -> EmulatorHandle:
    """Start an emulator for tests; throttling off unless ``tier``/``dps_throttle`` say otherwise."""
    settings: dict[str, Any] = {"hubs": 2, "tier": "off", "dps_throttle": False, "dps_retry_after": 0,
                                **options}
    emulator = Emulator(Options(state_dir=state_dir, **settings))
    return EmulatorHandle(emulator, emulator.start())


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    handle = start_emulator(tmp_path_factory.mktemp("emulator-state"))
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = handle.ca_bundle
    try:
        yield handle
    finally:
        handle.emulator.stop()
        if saved is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved


@pytest.fixture
def clean_emulator(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.reset()
    return emulator

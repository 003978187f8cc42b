"""Soak fixtures: the app's real services in-process, and the app under the local host as a subprocess.

Both talk to the session's emulator (``emulator.testing``) and Azurite (``tests.support.azurite_fixtures``),
which live in the test process and so survive every kill of the host. Each test gets its own table prefix and
queue names, so nothing is shared between tests.

Sizes: the ``soak`` tests run at CI size by default; the same tests at full size carry the ``soak_full``
marker (excluded by pyproject's addopts; run them with ``pytest -m soak_full tests/soak``).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devhost.azurite import AzuriteHandle
from emulator.testing import EmulatorHandle
from shared.adapters.settings import Settings
from tests.soak.hostproc import HostProcess
from unprovision.wiring import Services, build_services

APP_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AppConfig:
    """Names and settings of one test's app instance (values hold secrets: never print them)."""

    prefix: str
    lifecycle_queue: str
    work_queue: str
    values: dict[str, str]
    storage: str


def app_values(emu: EmulatorHandle, azurite: AzuriteHandle, prefix: str, lifecycle: str, work: str,
               **extra: str) -> dict[str, str]:
    hubs = {hub["hostName"]: hub["connectionString"] for hub in emu.hubs}
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "DPS_CONNECTION_STRING": emu.dps_connection_string,
        "IOTHUB_CONNECTIONS": json.dumps(hubs),
        "EMULATOR_CA_BUNDLE": emu.ca_bundle,
        "LIFECYCLE_QUEUE": lifecycle,
        "WORK_QUEUE": work,
        "JOURNAL_TABLE_PREFIX": prefix,
        "AUDIT_SCHEDULE": "0 0 0 1 1 *",
        **extra,
    }


@pytest.fixture
def app_config(clean_emulator: EmulatorHandle, azurite: AzuriteHandle) -> AppConfig:
    suffix = uuid.uuid4().hex[:10]
    prefix = f"soak{suffix}"
    lifecycle, work = f"soak-events-{suffix}", f"soak-work-{suffix}"
    values = app_values(clean_emulator, azurite, prefix, lifecycle, work)
    return AppConfig(prefix, lifecycle, work, values, azurite.connection_string)


def make_services(config: AppConfig, **overrides: str) -> Services:
    values = {**config.values, **overrides}
    return build_services(Settings.from_mapping(values), table_prefix=config.prefix, environ=values)


@pytest.fixture
def app_services(app_config: AppConfig) -> Iterator[Services]:
    """The app's real adapters (DPS/hub SDKs → emulator, journal → Azurite) built by ``wiring``."""
    services = make_services(app_config)
    yield services
    with contextlib.suppress(Exception):
        services.journal.drop_tables()  # type: ignore[attr-defined]


def write_local_settings(path: Path, values: dict[str, Any]) -> Path:
    """A local.settings.json for ``python -m devhost`` (mode 0600: it holds keys)."""
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}), encoding="utf-8")
    path.chmod(0o600)
    return path


def host_for(config: AppConfig, tmp_path: Path) -> Iterator[HostProcess]:
    """The real app under ``python -m devhost`` as a subprocess with ``config``'s settings (not started yet:
    call ``.start()``); stopped when the fixture that yields from this ends."""
    settings = write_local_settings(tmp_path / "local.settings.json", config.values)
    host = HostProcess(APP_ROOT, settings, tmp_path / "devhost-state", tmp_path / "devhost.log")
    yield host
    host.stop()


@pytest.fixture
def host_process(app_config: AppConfig, tmp_path: Path) -> Iterator[HostProcess]:
    """The real app with the suite's settings (``host_for``)."""
    yield from host_for(app_config, tmp_path)

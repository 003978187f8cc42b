"""Fixtures for the devhost tests: the toy app and a running ``Host`` against the session's Azurite.

Every host gets its own queue names (so tests never share messages) and its own state dir (keys.json).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devhost.azurite import AzuriteHandle
from devhost.host import Host, HostOptions

TOYAPP = Path(__file__).parent / "toyapp"
TOY_MODULE = "devhost_toyapp"  # never "function_app": that name belongs to the real app

HostFactory = Callable[..., Host]


@pytest.fixture
def toy_settings() -> dict[str, str]:
    """Settings a toy host needs; queue names unique to the test."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "TOY_QUEUE": f"toy-work-{suffix}",
        "TOY_FAIL_QUEUE": f"toy-fail-{suffix}",
        "TOY_SCHEDULE": "0 */5 * * * *",
        "ToyStorage": "UseDevelopmentStorage=true",  # mapped to the session's Azurite by the host
    }


@pytest.fixture
def make_host(azurite: AzuriteHandle, toy_settings: dict[str, str], tmp_path: Path) -> Iterator[HostFactory]:
    """Start a toy-app host (free HTTP port, Azurite for UseDevelopmentStorage=true), stopped at teardown."""
    hosts: list[Host] = []

    def start(**overrides: object) -> Host:
        extra = {**toy_settings, **overrides.pop("settings", {})}  # type: ignore[dict-item]
        options = HostOptions(
            app_root=TOYAPP,
            port=0,
            state_dir=tmp_path / "state",
            extra_settings=extra,
            dev_storage=azurite.connection_string,
            module_name=TOY_MODULE,
            **overrides,  # type: ignore[arg-type]
        )
        host = Host(options)
        hosts.append(host)
        return host.start()

    yield start
    for host in hosts:
        host.stop()

"""The emulator in its OWN process (so its memory never counts against the purging side) plus a small admin
client: knobs, reset, seeding, counters.

Why a subprocess and not ``emulator.server.Emulator`` in-process: the benchmark reads peak RSS of the purging
process, and the emulator's registry of 100k devices would otherwise be part of it; it also keeps the GIL of
the server away from the client being measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EmulatorProcess:
    """A running emulator: its ``emulator.json`` (holds keys: never print it) and the admin session."""

    config: dict[str, Any]
    config_path: Path
    process: subprocess.Popen[bytes]

    @property
    def ca_bundle(self) -> str:
        return str(self.config["caBundle"])

    @property
    def hub_names(self) -> list[str]:
        return [str(h["name"]) for h in self.config["hubs"]]

    def hub_host(self, name: str) -> str:
        return next(str(h["hostName"]) for h in self.config["hubs"] if h["name"] == name)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """One admin call (loopback only); raises on >= 400 without echoing the config."""
        url = f"{self.config['admin']}/{path.lstrip('/')}"
        response = requests.request(method, url, json=body, verify=self.ca_bundle, timeout=120)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self) -> None:
        self.admin("POST", "reset")

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """Knobs: tier, units, dpsThrottle, timeCompression, latencyMs, jitterMs, faults."""
        return dict(self.admin("PUT", "knobs", knobs))

    def counters(self) -> dict[str, Any]:
        return dict(self.admin("GET", "counters"))


def _wait_ready(config_path: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited early with code {process.returncode}")
        if config_path.exists():
            try:
                return dict(json.loads(config_path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                pass  # written atomically, but be tolerant
        time.sleep(0.05)
    raise TimeoutError("emulator did not become ready")


@contextmanager
def running_emulator(
    state_dir: Path, *, hubs: int = 3, tier: str = "S1", time_compression: float = 1.0
) -> Iterator[EmulatorProcess]:
    """Start ``python -m emulator`` on free 127.0.0.1 ports; stop it (SIGTERM, then kill) on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "emulator.json"
    config_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "emulator",
        "--state-dir",
        str(state_dir),
        "--hubs",
        str(hubs),
        "--tier",
        tier,
        "--time-compression",
        str(time_compression),
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        config = _wait_ready(config_path, process)
        yield EmulatorProcess(config, config_path, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

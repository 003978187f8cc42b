"""Drive Microsoft's unmodified Node.js device SDK (``devhost/node_device.js``, HTTPS transport) from Python:
register through DPS's 202 + polling flow and send one device-to-cloud message, as a real device would.

Used by the tests (``tests/integration/test_node_device_sdk.py``) and by the demo's fleet probe
(``devhost.fleet_probe``). The SDK packages are dev dependencies in ``package.json`` (installed by ``make
setup`` with Azurite). The emulator must run in standard-ports mode: the SDK dials the host names DPS
returns, on port 443. One ``node`` process per call (≈ 0.35 s, most of it Node's start-up).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "devhost" / "node_device.js"
REQUIRED = ("azure-iot-provisioning-device", "azure-iot-provisioning-device-http", "azure-iot-device",
            "azure-iot-device-http", "azure-iot-security-symmetric-key", "azure-iot-security-x509")


def standard_ports(config: dict[str, Any]) -> bool:
    """True when every endpoint in the emulator config is named without a port (what the SDK can dial)."""
    names = [config["dps"]["hostName"], *(hub["hostName"] for hub in config["hubs"])]
    return all(":" not in name for name in names)


def missing() -> str | None:
    """Why the Node SDK cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed"
    absent = [name for name in REQUIRED if not (ROOT / "node_modules" / name / "package.json").exists()]
    return f"node_modules lacks {', '.join(absent)} (run make setup)" if absent else None


def pick(config: dict[str, Any], wanted: str = "auto") -> str:
    """Which device code to use: ``"node"`` (this SDK) or ``"python"`` (:mod:`devhost.device_client`).

    ``"auto"`` picks the SDK when the emulator runs on standard ports and the SDK is installed; an explicit
    ``"node"`` that cannot run raises ``RuntimeError`` with the reason (never a silent switch)."""
    if wanted not in ("auto", "node", "python"):
        raise ValueError(f"device_sdk must be auto, node or python, not {wanted!r}")
    reason = why_not(config)
    if wanted == "node" and reason is not None:
        raise RuntimeError(f"Microsoft's Node device SDK cannot run here: {reason}")
    if wanted == "auto":
        return "python" if reason is not None else "node"
    return wanted


def why_not(config: dict[str, Any]) -> str | None:
    """Why the SDK cannot be used against this emulator (None when it can)."""
    if not standard_ports(config):
        return "the emulator is not in standard-ports mode (the SDK dials host names on port 443)"
    return missing()


@dataclass(frozen=True)
class SdkDevice:
    """What a device holds, as the Node SDK takes it: a (derived) symmetric key, or PEM files."""

    registration_id: str
    symmetric_key: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def args(self) -> dict[str, Any]:
        if self.symmetric_key:
            return {"registrationId": self.registration_id, "symmetricKey": self.symmetric_key}
        return {"registrationId": self.registration_id, "certFile": self.cert_file, "keyFile": self.key_file}


@dataclass(frozen=True)
class SdkResult:
    registration: dict[str, Any] | None
    registration_error: dict[str, Any] | None
    send: dict[str, Any] | None
    timings: dict[str, int]

    @property
    def registered(self) -> bool:
        return self.registration is not None and self.registration.get("status") == "assigned"

    @property
    def sent(self) -> bool:
        return bool(self.send and self.send.get("ok"))


def run(config: dict[str, Any], device: SdkDevice, *, send: bool = True, hub: str | None = None,
        device_id: str | None = None, fallback_hub: str | None = None, timeout: float = 60) -> SdkResult:
    """Register (unless ``hub`` is given) and send one message through the Node SDK; ``fallback_hub``: when
    the registration is refused, still try to send there (the hub a revoked device last knew)."""
    args = {"provisioningHost": config["dps"]["hostName"], "idScope": config["dps"]["idScope"],
            "send": send, **device.args()}
    if hub is not None:
        args.update(hub=hub, deviceId=device_id or device.registration_id)
    elif fallback_hub is not None:
        args.update(fallbackHub=fallback_hub, deviceId=device_id or device.registration_id)
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": config["caBundle"], "NO_PROXY": "*"}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(name, None)
    node = shutil.which("node") or "node"
    # the arguments (keys included) go on stdin, never on the command line where `ps` would show them
    done = subprocess.run([node, str(SCRIPT)], input=json.dumps(args), capture_output=True,  # noqa: S603
                          text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise RuntimeError(f"node device script failed ({done.returncode}): {done.stderr[-2000:]}") from exc
    if "fatal" in out:
        raise RuntimeError(f"node device script failed: {out['fatal']}")
    return SdkResult(out["registration"], out["registrationError"], out["send"], out.get("timings") or {})

"""Measure the device side through Microsoft's Node.js device SDK against the emulator (issue 12's note).

    .venv/bin/python scripts/measure_node_sdk.py [--runs 20] [--retry-after 0] [--json]

Starts its own emulator in standard-ports mode (port 443 on 127.x.y.z: needs root, as in CI) in a temporary
directory, creates one symmetric-key and one X.509 (self-signed) individual enrollment through the
provisioning service SDK, then measures, ``--runs`` times each, medians reported:

* **TLS handshake** to the DPS endpoint, from Node (the same OpenSSL the SDK uses), one Node process for all
  runs: ``tls.connect`` → ``secureConnect``, a full handshake each time (no session reuse), with the device's
  client certificate (mutual TLS, X.509 devices) and without one (symmetric-key devices).
* **Registration** through the SDK (``ProvisioningDeviceClient.register()`` with the HTTPS transport,
  ``devhost/node_device.js``): from the call until it resolves — PUT → 202 ``assigning`` → wait
  ``Retry-After`` → operation GET → ``assigned``, TLS handshakes included. Also the device-to-cloud send
  (``Client.sendEvent``) and the whole ``node`` process as the tests and the demo run it (start-up included).

Loopback only; no key, token or connection string is printed.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devhost import node_device  # noqa: E402  (after the path tweak: run as a script)
from emulator.options import Options  # noqa: E402
from emulator.server import Emulator  # noqa: E402

# Node side of the handshake measurement: arguments on stdin, one JSON line out (milliseconds per handshake).
HANDSHAKE_JS = r"""
const tls = require('tls');
const fs = require('fs');
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', async () => {
  const a = JSON.parse(input);
  const options = { host: a.host, port: 443, servername: undefined, ca: fs.readFileSync(a.ca) };
  if (a.certFile) { options.cert = fs.readFileSync(a.certFile); options.key = fs.readFileSync(a.keyFile); }
  const times = [];
  for (let i = 0; i < a.runs; i += 1) {
    times.push(await new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const socket = tls.connect(options, () => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        socket.end();
        resolve({ ms, protocol: socket.getProtocol(), authorized: socket.authorized });
      });
      socket.on('error', reject);
    }));
  }
  process.stdout.write(JSON.stringify(times) + '\n');
});
"""


def _self_signed(cn: str, directory: Path) -> tuple[str, str, str]:
    """A self-signed client certificate (an X.509 individual enrollment's device): (PEM, cert, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_file, key_file = directory / f"{cn}.pem", directory / f"{cn}.key.pem"
    cert_file.write_text(pem, encoding="ascii")
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return pem, str(cert_file), str(key_file)


def _enroll(config: dict[str, Any], directory: Path) -> dict[str, node_device.SdkDevice]:
    from provisioningserviceclient import ProvisioningServiceClient
    from provisioningserviceclient.models import (
        AttestationMechanism,
        IndividualEnrollment,
        SymmetricKeyAttestation,
    )

    psc = ProvisioningServiceClient.create_from_connection_string(config["dps"]["connectionString"])
    hub = config["hubs"][0]["hostName"]
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    symmetric = AttestationMechanism(type="symmetricKey", symmetric_key=SymmetricKeyAttestation(
        primary_key=key, secondary_key=base64.b64encode(secrets.token_bytes(32)).decode()))
    psc.create_or_update(IndividualEnrollment.create("measure-sk", symmetric, iot_hub_host_name=hub))
    pem, cert_file, key_file = _self_signed("measure-x509", directory)
    psc.create_or_update(IndividualEnrollment.create(
        "measure-x509", AttestationMechanism.create_with_x509_client_certs(pem), iot_hub_host_name=hub))
    return {"symmetric key": node_device.SdkDevice("measure-sk", symmetric_key=key),
            "X.509": node_device.SdkDevice("measure-x509", cert_file=cert_file, key_file=key_file)}


def _handshakes(config: dict[str, Any], runs: int, device: node_device.SdkDevice | None) -> list[float]:
    args = {"host": config["dps"]["hostName"], "ca": config["caBundle"], "runs": runs}
    if device is not None:
        args.update(certFile=device.cert_file, keyFile=device.key_file)
    node = shutil.which("node") or "node"
    done = subprocess.run([node, "-e", HANDSHAKE_JS], input=json.dumps(args), capture_output=True,  # noqa: S603
                          text=True, cwd=ROOT, check=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "*"})
    results = json.loads(done.stdout)
    if not all(item["authorized"] for item in results):
        raise RuntimeError("Node did not trust the emulator's certificate")
    return [float(item["ms"]) for item in results[1:]]  # the first one warms Node's TLS code up


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "median": statistics.median(values), "min": ordered[0],
            "p90": ordered[max(0, round(0.9 * len(ordered)) - 1)], "max": ordered[-1]}


def measure(runs: int, retry_after: float) -> dict[str, Any]:
    reason = node_device.missing()
    if reason:
        raise SystemExit(f"cannot measure: {reason}")
    with tempfile.TemporaryDirectory(prefix="measure-node-sdk-") as temp:
        emulator = Emulator(Options(state_dir=Path(temp) / "emulator", hubs=1, tier="off", dps_throttle=False,
                                    standard_ports=True, dps_retry_after=retry_after))
        try:
            config = emulator.start()
        except OSError as exc:
            raise SystemExit(f"cannot measure: standard-ports mode unavailable ({exc})") from exc
        os.environ["REQUESTS_CA_BUNDLE"] = config["caBundle"]
        try:
            devices = _enroll(config, Path(temp))
            report: dict[str, Any] = {
                "runs": runs, "retryAfter": retry_after,
                "handshake_ms": {
                    "mutual TLS (X.509 client certificate)": _stats(_handshakes(config, runs + 1,
                                                                                devices["X.509"])),
                    "server-only TLS (symmetric key)": _stats(_handshakes(config, runs + 1, None))},
                "register_ms": {}, "send_ms": {}, "process_ms": {}}
            for label, device in devices.items():
                register, send, process = [], [], []
                for _ in range(runs):
                    started = time.perf_counter()
                    result = node_device.run(config, device)
                    process.append((time.perf_counter() - started) * 1000)
                    if not (result.registered and result.sent):
                        raise RuntimeError(f"{label}: the device did not register and send: {result}")
                    register.append(float(result.timings["registerMs"]))
                    send.append(float(result.timings["sendMs"]))
                report["register_ms"][label] = _stats(register)
                report["send_ms"][label] = _stats(send)
                report["process_ms"][label] = _stats(process)
            counters = emulator.knobs.counters()["calls"].get("dps", {})
            device_api = "/registrations/{registration_id}/"
            report["dps_calls"] = {op: by for op, by in counters.items() if device_api in op}
        finally:
            emulator.stop()
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"Microsoft Node.js device SDK (HTTPS) against the emulator, standard-ports mode, "
          f"{report['runs']} runs each, Retry-After {report['retryAfter']:g} s; ms")
    print(f"{'measure':<70} {'median':>8} {'min':>8} {'p90':>8} {'max':>8}")
    for section, title in (("handshake_ms", "TLS handshake, DPS endpoint"),
                           ("register_ms", "register() 202 + polling, end to end"),
                           ("send_ms", "sendEvent() to the hub"),
                           ("process_ms", "whole node process (register + send)")):
        for label, stats in report[section].items():
            name = f"{title} — {label}"
            print(f"{name:<70} {stats['median']:>8.1f} {stats['min']:>8.1f} {stats['p90']:>8.1f} "
                  f"{stats['max']:>8.1f}")
    print("DPS calls:", json.dumps(report["dps_calls"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--retry-after", type=float, default=0.0,
                        help="Retry-After (s) the emulator sends with 202 (default 0: the flow's own cost)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = measure(args.runs, args.retry_after)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate ``samples/inventory.json`` and ``samples/events/*.json`` with fresh certificates.

    .venv/bin/python scripts/make_samples.py

The fleet: an X.509 root group with two intermediate groups (one known only by certificate info, as DPS
often reports it), a symmetric-key group, and devices with individual TPM / X.509 / symmetric-key
enrollments, plus a history for the ``found`` samples. Only certificates are written; private keys are
thrown away.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.certs import IssuedCert, make_ca, make_intermediate, make_leaf  # noqa: E402

HUB_EU = "hub-eu.azure-devices.net"
HUB_US = "hub-us.azure-devices.net"
WHEN = "2025-06-01T09:30:00Z"


def _info_only(cert: IssuedCert) -> dict[str, str]:
    return {"subject": cert.cert.subject.rfc4514_string(), "issuer": cert.cert.issuer.rfc4514_string()}


def _member(reg_id: str, group: str, hub: str, hub_status: str = "enabled") -> dict[str, Any]:
    return {
        "registration": {
            "registrationId": reg_id,
            "deviceId": reg_id,
            "assignedHub": hub,
            "status": "assigned",
            "enrollmentGroupId": group,
        },
        "hubDevice": {"hub": hub, "deviceId": reg_id, "status": hub_status},
    }


def _own(
    reg_id: str,
    attestation: str,
    hub: str,
    *,
    status: str = "enabled",
    hub_status: str = "enabled",
    cert: IssuedCert | None = None,
) -> dict[str, Any]:
    enrollment: dict[str, Any] = {"registrationId": reg_id, "attestation": attestation, "status": status}
    if cert is not None:
        enrollment["clientCertificate"] = {"pem": cert.pem}
    return {
        "registration": {
            "registrationId": reg_id,
            "deviceId": reg_id,
            "assignedHub": hub,
            "status": "assigned",
        },
        "enrollment": enrollment,
        "hubDevice": {"hub": hub, "deviceId": reg_id, "status": hub_status},
    }


def build() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    root = make_ca("Contoso Fleet Root")
    line_a, line_b = make_intermediate("Contoso Line A", root), make_intermediate("Contoso Line B", root)
    leaf_a = make_leaf("sensor-a-001", line_a)
    camera = make_leaf("camera-x509-005", line_a)
    pump = {
        **_member("pump-008", "line-a", HUB_EU, "disabled"),
        "enrollment": {
            "registrationId": "pump-008",
            "attestation": "symmetricKey",
            "status": "disabled",
            "blockingMarker": "evt-2025-0007",
        },
    }
    inventory = {
        "groups": [
            {
                "groupId": "fleet-root",
                "attestation": "x509",
                "status": "enabled",
                "signingCertificates": [{"pem": root.pem}],
            },
            {
                "groupId": "line-a",
                "attestation": "x509",
                "status": "enabled",
                "signingCertificates": [{"pem": line_a.pem}],
            },
            {
                "groupId": "line-b",
                "attestation": "x509",
                "status": "enabled",
                "signingCertificates": [_info_only(line_b)],
            },
            {"groupId": "sensors-sk", "attestation": "symmetricKey", "status": "enabled"},
        ],
        "devices": [
            _member("sensor-a-001", "line-a", HUB_EU),
            _member("sensor-b-002", "line-b", HUB_EU),
            _member("thermo-sk-003", "sensors-sk", HUB_US),
            _own("gateway-tpm-004", "tpm", HUB_US),
            _own("camera-x509-005", "x509", HUB_EU, cert=camera),
            _own("kiosk-sk-006", "symmetricKey", HUB_US),
            _own("tracker-007", "tpm", HUB_US, status="disabled", hub_status="disabled"),
            pump,
        ],
        "history": {
            "tracker-007": [
                {
                    "eventId": "evt-2025-0003",
                    "eventType": "lost",
                    "stepKinds": ["EnrollmentDisabled", "HubIdentityDisabled"],
                }
            ],
            "pump-008": [
                {
                    "eventId": "evt-2025-0007",
                    "eventType": "stolen",
                    "stepKinds": ["BlockingEnrollmentCreated", "HubIdentityDisabled"],
                }
            ],
        },
    }
    return inventory, _events(leaf_a)


def _event(event_id: str, event_type: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "type": event_type,
        **target,
        "occurredAt": WHEN,
        "source": "asset-tracker",
        **extra,
    }


def _events(leaf_a: IssuedCert) -> dict[str, dict[str, Any]]:
    return {
        "lost-x509-group-member": _event(
            "evt-1001",
            "lost",
            {"registrationId": "sensor-a-001"},
            certificate=leaf_a.pem,
            note="reported lost by site A",
        ),
        "lost-x509-group-member-no-cert": _event("evt-1002", "lost", {"registrationId": "sensor-b-002"}),
        "lost-symmetric-group-member": _event("evt-1003", "lost", {"registrationId": "thermo-sk-003"}),
        "stolen-tpm-individual": _event("evt-1004", "stolen", {"registrationId": "gateway-tpm-004"}),
        "sold-x509-individual": _event("evt-1005", "sold", {"registrationId": "camera-x509-005"}),
        "retired-symmetric-individual": _event("evt-1006", "retired", {"registrationId": "kiosk-sk-006"}),
        "found-after-lost": _event("evt-1007", "found", {"registrationId": "tracker-007"}),
        "found-after-stolen": _event("evt-1008", "found", {"registrationId": "pump-008"}),
        "found-after-stolen-forced": _event("evt-1009", "found", {"registrationId": "pump-008"}, force=True),
        "compromised-group": _event("evt-1010", "compromised", {"enrollmentGroupId": "line-a"}),
        "retired-group-delete": _event(
            "evt-1011", "retired", {"enrollmentGroupId": "line-a"}, deleteGroup=True
        ),
        "unknown-device": _event("evt-1012", "lost", {"registrationId": "no-such-device"}),
        "invalid-event": {
            "eventId": "",
            "type": "misplaced",
            "registrationID": "sensor-a-001",
            "occurredAt": "yesterday",
            "source": "asset-tracker",
        },
    }


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    inventory, events = build()
    (ROOT / "samples" / "events").mkdir(parents=True, exist_ok=True)
    _write(ROOT / "samples" / "inventory.json", inventory)
    for name, event in events.items():
        _write(ROOT / "samples" / "events" / f"{name}.json", event)
    print(f"wrote samples/inventory.json and {len(events)} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

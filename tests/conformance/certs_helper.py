"""Test helpers for DPS: certificate thumbprints/headers over ``tests.support.certs``, and device-side calls.

Certificates come from the shared generator (``make_ca``, ``make_intermediate``, ``make_leaf``); this module
only adds what the DPS tests need on top: the ``x-emulator-client-cert`` header, SHA-1 thumbprints, the
device SAS and the plain-HTTPS registration call (the Python SDK in this project is service-side only).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes

from emulator import sas
from tests.support.certs import IssuedCert, make_ca, make_intermediate, make_leaf, make_self_signed_leaf

__all__ = ["IssuedCert", "chain_header", "device_sas", "make_ca", "make_intermediate", "make_leaf",
           "make_self_signed_leaf", "register_device", "thumbprint"]


def thumbprint(cert: IssuedCert) -> str:
    """Upper-case hex SHA-1, as DPS reports ``sha1Thumbprint``."""
    return cert.cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - X.509 thumbprints are SHA-1


def chain_header(*certs: IssuedCert) -> str:
    """The ``x-emulator-client-cert`` value: base64 of the PEM chain, leaf first."""
    return base64.b64encode("".join(c.pem for c in certs).encode()).decode()


def register_device(emu: Any, reg_id: str, headers: dict[str, str], *, max_polls: int = 20,
                    cert: tuple[str, str] | None = None) -> requests.Response:
    """A device's registration as DPS runs it: PUT ``…/register`` (202 ``assigning`` + ``operationId``), then
    GET ``…/operations/{operationId}`` after ``Retry-After`` until the status is final. Returns the last
    answer (200 with the final operation status, or the error answer, e.g. 401). ``cert``: (cert, key)
    PEM files for mutual TLS."""
    dps = emu.config["dps"]
    base = f"{dps['deviceEndpoint']}/{dps['idScope']}/registrations/{reg_id}"
    params = {"api-version": "2021-06-01"}
    with requests.Session() as session:
        session.cert = cert
        verify = emu.config["caBundle"]  # per call: a session's ``verify`` loses to REQUESTS_CA_BUNDLE
        response = session.put(f"{base}/register", params=params, json={"registrationId": reg_id},
                               headers=headers, verify=verify, timeout=10)
        for _ in range(max_polls):
            if response.status_code != 202 or response.json().get("status") != "assigning":
                break
            time.sleep(float(response.headers.get("Retry-After") or 0))
            response = session.get(f"{base}/operations/{response.json()['operationId']}", params=params,
                                   headers=headers, verify=verify, timeout=10)
        return response


def device_sas(emu: Any, reg_id: str, key: str) -> dict[str, str]:
    """Device SAS for DPS: sr = "{idScope}/registrations/{registrationId}", skn = "registration" (D4)."""
    scope = emu.config["dps"]["idScope"]
    return {"Authorization": sas.make_token(f"{scope}/registrations/{reg_id}", key, policy="registration")}

"""A device's side of the conversation: register with DPS and send telemetry to the assigned hub (HTTPS).

The project's Python SDKs are service-side only, so this is the small, explicit device client the demo and
tests use to ask the question revocation is about: *may this device still provision, and may it still
talk to its hub?* (Microsoft's Node.js device SDK is driven by ``devhost/node_device.js`` for the
same question with the vendor's own code.) It speaks the wire formats the emulator documents
(docs/emulator-dps.md and emulator/README.md), following the flow DPS runs:

* DPS: ``PUT {deviceEndpoint}/{idScope}/registrations/{regId}/register?api-version=2021-06-01`` answers
  202 ``{"operationId", "status": "assigning"}`` with ``Retry-After``; the client waits that long and polls
  ``GET …/operations/{operationId}`` until the status is final (``assigned``, ``disabled``, ``failed``).
  A 401 at any point is ``unauthorized``.
  Symmetric key: ``SharedAccessSignature sr=<urlencoded lower(idScope/registrations/regId)>&sig&se``
  ``&skn=registration``.
  X.509: the certificate goes in the TLS handshake (mutual TLS) when the credentials carry the chain and
  key files; with only a chain, the emulator's stand-in header ``x-emulator-client-cert`` (base64 PEM
  chain, leaf first). TPM: header ``x-emulator-tpm-ek`` (stand-in for the TPM nonce challenge).
* Hub: ``POST https://{hub}/devices/{deviceId}/messages/events?api-version=2020-09-30``, SAS
  ``sr={hub}/devices/{deviceId}`` without ``skn``, or the same certificate (handshake or header).

TPM keys: real DPS returns the hub key encrypted to the TPM; the emulator does not, so callers pass the hub
key to :meth:`DeviceClient.send_telemetry` themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import requests

DPS_API_VERSION = "2021-06-01"
HUB_API_VERSION = "2020-09-30"
CLIENT_CERT_HEADER = "x-emulator-client-cert"
TPM_HEADER = "x-emulator-tpm-ek"
TOKEN_TTL_S = 3600
POLL_INTERVAL_S = 2.0  # when DPS sends no Retry-After (the Node SDK's default polling interval)
MAX_RETRY_AFTER_S = 10.0
MAX_POLLS = 20


class DeviceClientError(Exception):
    """The device call could not be made (network, TLS, unexpected answer); ``status`` when one came back."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DpsEndpoint:
    """Where a device registers: DPS device endpoint, ID scope, and the CA bundle that signs its TLS cert."""

    device_endpoint: str
    id_scope: str
    ca_bundle: str | None = None

    @classmethod
    def from_emulator_config(cls, config: dict[str, Any]) -> DpsEndpoint:
        dps = config["dps"]
        return cls(dps["deviceEndpoint"], dps["idScope"], config.get("caBundle"))


@dataclass(frozen=True, repr=False)
class DeviceCredentials:
    """What the device holds. Exactly one of the three is normally set; ``repr`` hides every secret."""

    registration_id: str
    symmetric_key: str | None = None  # base64; for group members the derived key
    cert_chain_pem: str | None = None  # leaf first, then intermediates (not the root)
    tpm_endorsement_key: str | None = None
    cert_file: str | None = None  # PEM chain file (leaf first) and its private key: mutual TLS
    key_file: str | None = None

    @property
    def tls_cert(self) -> tuple[str, str] | None:
        return (self.cert_file, self.key_file) if self.cert_file and self.key_file else None

    def __repr__(self) -> str:
        kind = "sas" if self.symmetric_key else "x509" if self.cert_chain_pem else "tpm"
        return f"DeviceCredentials(registration_id={self.registration_id!r}, kind={kind})"


@dataclass(frozen=True)
class Registration:
    """The device's view of a registration attempt: ``assigned``, ``disabled`` or ``unauthorized`` …"""

    status: str
    http_status: int
    assigned_hub: str | None = None
    device_id: str | None = None

    @property
    def assigned(self) -> bool:
        return self.status == "assigned"


@dataclass(frozen=True)
class Telemetry:
    """Outcome of one device-to-cloud message: accepted (204) or refused (401 …)."""

    http_status: int
    error_code: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.http_status < 300


def sas_token(resource: str, key_b64: str, *, policy: str | None = None, ttl: int = TOKEN_TTL_S) -> str:
    """``SharedAccessSignature`` for ``resource``: HMAC-SHA256 of ``quote_plus(resource) + "\\n" + expiry``.

    Written here rather than imported from the emulator: a device client must not depend on the server.
    """
    expiry = int(time.time()) + ttl
    sr = quote_plus(resource)
    digest = hmac.new(base64.b64decode(key_b64), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    sig = quote(base64.b64encode(digest).decode(), safe="")
    token = f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"
    return token + (f"&skn={policy}" if policy else "")


def derive_group_device_key(group_key_b64: str, registration_id: str) -> str:
    """A symmetric-key group member's key: base64(HMAC-SHA256(base64decode(groupKey), registrationId))."""
    digest = hmac.new(base64.b64decode(group_key_b64), registration_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def chain_header(chain_pem: str) -> str:
    """The emulator's client-certificate header value: base64 of the PEM chain, leaf first."""
    return base64.b64encode(chain_pem.encode()).decode()


def _assigning(response: requests.Response) -> bool:
    if response.status_code != 200:
        return False
    try:
        return bool(response.json().get("status") == "assigning")
    except ValueError:
        return False


def _retry_after(response: requests.Response) -> float:
    """Seconds to wait before the next poll: DPS's ``Retry-After``, else the SDKs' default interval."""
    try:
        value = float(response.headers.get("Retry-After", POLL_INTERVAL_S))
    except ValueError:
        value = POLL_INTERVAL_S
    return min(max(value, 0.0), MAX_RETRY_AFTER_S)


class DeviceClient:
    """One device: ``register()`` against DPS, ``send_telemetry()`` to a hub. Never logs a key or token."""

    def __init__(self, endpoint: DpsEndpoint, credentials: DeviceCredentials, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.trust_env = False  # loopback only: never route through a proxy from the environment

    # -- DPS ---------------------------------------------------------------------------------------

    def _registration_headers(self) -> dict[str, str]:
        creds = self.credentials
        headers: dict[str, str] = {}
        if creds.symmetric_key:
            resource = f"{self.endpoint.id_scope}/registrations/{creds.registration_id}".lower()
            headers["Authorization"] = sas_token(resource, creds.symmetric_key, policy="registration")
        if creds.cert_chain_pem and not creds.tls_cert:
            headers[CLIENT_CERT_HEADER] = chain_header(creds.cert_chain_pem)
        if creds.tpm_endorsement_key:
            headers[TPM_HEADER] = creds.tpm_endorsement_key
        return headers

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, url, timeout=self.timeout, cert=self.credentials.tls_cert,
                                         verify=self.endpoint.ca_bundle or True, **kwargs)
        except requests.RequestException as exc:
            where = url.split("?", maxsplit=1)[0]  # no query string in messages
            raise DeviceClientError(f"{method} {where} failed: {type(exc).__name__}") from exc

    def register(self) -> Registration:
        """Register (or re-register) and poll the operation until it is final; 401 becomes
        ``unauthorized``, other errors (or an operation still ``assigning`` after MAX_POLLS) raise
        DeviceClientError."""
        reg_id = self.credentials.registration_id
        base = f"{self.endpoint.device_endpoint}/{self.endpoint.id_scope}/registrations/{reg_id}"
        response = self._call("PUT", f"{base}/register", params={"api-version": DPS_API_VERSION},
                              json={"registrationId": reg_id}, headers=self._registration_headers())
        polls = 0
        while response.status_code == 202 or _assigning(response):
            if polls >= MAX_POLLS:
                raise DeviceClientError(f"registration still assigning after {polls} polls", 202)
            operation_id = response.json()["operationId"]
            time.sleep(_retry_after(response))
            response = self._call("GET", f"{base}/operations/{operation_id}",
                                  params={"api-version": DPS_API_VERSION},
                                  headers=self._registration_headers())
            polls += 1
        if response.status_code in (401, 403):
            return Registration("unauthorized", response.status_code)
        if response.status_code != 200:
            status = response.status_code
            raise DeviceClientError(f"registration answered HTTP {status}", status)
        body = response.json()
        state = body.get("registrationState") or {}
        return Registration(str(body.get("status")), 200, state.get("assignedHub"), state.get("deviceId"))

    # -- hub ---------------------------------------------------------------------------------------

    def send_telemetry(self, hub_host: str, device_id: str, payload: dict[str, Any] | None = None, *,
                       key: str | None = None) -> Telemetry:
        """Send one device-to-cloud message. ``key`` overrides the credentials' key (TPM devices)."""
        headers = {"Content-Type": "application/json"}
        sas_key = key or self.credentials.symmetric_key
        if sas_key:
            headers["Authorization"] = sas_token(f"{hub_host}/devices/{device_id}", sas_key)
        elif self.credentials.cert_chain_pem and not self.credentials.tls_cert:
            headers[CLIENT_CERT_HEADER] = chain_header(self.credentials.cert_chain_pem)
        body = json.dumps(payload or {"hello": device_id})
        url = f"https://{hub_host}/devices/{quote(device_id, safe='')}/messages/events"
        params = {"api-version": HUB_API_VERSION}
        response = self._call("POST", url, params=params, data=body, headers=headers)
        return Telemetry(response.status_code, response.headers.get("iothub-errorcode"))

"""Device-facing hub endpoint: device-to-cloud telemetry over HTTPS.

``POST /devices/{deviceId}/messages/events`` answers 204 for an enabled identity presenting valid
credentials and 401 otherwise — above all for a disabled or deleted identity, which is what revocation
must achieve (docs/azure-behaviour.md §4.4, H2).

Credentials, by the identity's authentication type:
* ``sas``: a device token (``sr={hostName}/devices/{deviceId}``, no ``skn``) signed with the primary or
  secondary key.
* ``selfSigned``: the leaf certificate's SHA-1 or SHA-256 thumbprint equals a registered thumbprint.
* ``certificateAuthority``: leaf CN == deviceId, every certificate in the presented chain is signed by the
  next one and currently valid. Deviation: IoT Hub's verified-CA store is not modelled, so any well-formed
  chain is accepted — the revocation behaviour (status / existence) is what the emulator is for.

Certificates come from the TLS handshake (mutual TLS: every listener requests a client certificate and
accepts any chain; see ``emulator.tls``), leaf first with the intermediates the device sent. The
emulator-only header ``x-emulator-client-cert`` (base64 of the PEM chain, leaf first) is a fallback, read
only when the handshake carried no certificate.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from emulator import sas
from emulator.http import Request, Response, Router, ServiceError
from emulator.iothub.model import Identity, hub_error, now_iso
from emulator.iothub.state import HubState

CLIENT_CERT_HEADER = "x-emulator-client-cert"
_D2C = re.compile(r"^/devices/(?P<device_id>[^/]+)/messages/events/?$")


def is_device_path(path: str) -> bool:
    """True for the device-facing routes (authenticated per device, not with a service policy)."""
    return bool(_D2C.match(path))


def _unauthorized(reason: str) -> ServiceError:
    return hub_error(401, "IotHubUnauthorizedAccess", f"Unauthorized: {reason}")


def _check_sas(request: Request, ident: Identity) -> None:
    keys = [k for k in ident.auth.get("symmetricKey", {}).values() if k]
    resource = f"{request.headers.get('host', '')}/devices/{ident.device_id}"
    try:
        sas.verify(request.headers.get("authorization"), resource=resource, keys_for=lambda _t: keys)
    except sas.SasError as exc:
        raise _unauthorized(str(exc)) from exc


def _load_chain(request: Request) -> list[x509.Certificate]:
    try:
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in request.client_cert_chain]
    except ValueError as exc:
        raise _unauthorized("the presented certificate chain cannot be parsed") from exc
    if not chain:
        raise _unauthorized("no client certificate presented")
    return chain


def _thumbprints(cert: x509.Certificate) -> set[str]:
    sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - thumbprints are SHA-1 by definition
    return {sha1, cert.fingerprint(hashes.SHA256()).hex().upper()}


def _check_chain(chain: list[x509.Certificate], device_id: str) -> None:
    now = dt.datetime.now(dt.UTC)
    names = chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != device_id:
        raise _unauthorized("leaf certificate CN does not match the device ID")
    for index, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise _unauthorized("a certificate in the chain is not currently valid")
        issuer = chain[index + 1] if index + 1 < len(chain) else None
        if issuer is not None:
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise _unauthorized("the certificate chain does not verify") from exc


def authenticate(state: HubState, request: Request, device_id: str) -> Identity:
    """Return the identity if the request may act as ``device_id``; ServiceError 401 otherwise."""
    ident = state.identity(device_id)
    if ident is None:
        raise _unauthorized("device not registered")
    kind = ident.auth.get("type")
    if kind == "sas":
        _check_sas(request, ident)
    elif kind == "selfSigned":
        wanted = {t.upper() for t in ident.auth.get("x509Thumbprint", {}).values() if t}
        if not (_thumbprints(_load_chain(request)[0]) & wanted):
            raise _unauthorized("certificate thumbprint does not match")
    elif kind == "certificateAuthority":
        _check_chain(_load_chain(request), device_id)
    else:
        raise _unauthorized("the device has no usable authentication")
    if ident.status != "enabled":
        raise _unauthorized("device is disabled")
    return ident


def register_routes(router: Router, state: HubState) -> None:
    """Add the device-facing routes to a hub router."""

    @router.route("POST", "/devices/{device_id}/messages/events")
    def send_event(request: Request, device_id: str) -> Response:
        authenticate(state, request, device_id)
        state.record_activity(device_id, now_iso())
        return Response(204)

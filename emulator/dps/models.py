"""Validation and normalisation of DPS enrollment bodies (pure functions, no locking, no HTTP).

Why separate from the store: the same rules apply to PUT, bulk operations and admin seeding, and the store
stays small. Stored documents are wire JSON (camelCase) that keep the uploaded certificate PEMs;
``public_view`` strips them, because DPS answers with ``{"info": {...}}`` only (docs/azure-behaviour.md §3.3,
H9).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

from emulator.dps import errors
from emulator.dps.x509 import CertificateError, certificate_info, load_certificate

# docs/azure-behaviour.md §2: alphanumeric plus - . _ : ; first character alphanumeric; last alphanumeric or
# '-' (the docs' wording — the REST spec text forbids a trailing '-', an unresolved conflict, §11.6); at most
# 128 characters.
_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?$")
_READ_ONLY = ("registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag")
_STATUSES = ("enabled", "disabled")
_CERT_SLOTS = ("clientCertificates", "signingCertificates")


def validate_id(value: Any, what: str) -> str:
    """Return ``value`` when it is a valid DPS registration/group ID; 400 otherwise."""
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.bad_request(f"Invalid {what}: {str(value)[:140]!r}.")
    return value


def new_symmetric_key() -> str:
    """A 64-byte random key, base64 — the size DPS generates today (D4 2025)."""
    return base64.b64encode(os.urandom(64)).decode()


def _check_key(value: Any) -> None:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not 16 <= len(raw) <= 64:
        raise errors.bad_request("Symmetric keys must be base64 encoded and 16 to 64 bytes long.")


def _symmetric(att: dict[str, Any]) -> dict[str, Any]:
    keys = dict(att.get("symmetricKey") or {})
    for slot in ("primaryKey", "secondaryKey"):
        if keys.get(slot):
            _check_key(keys[slot])
        else:
            keys[slot] = new_symmetric_key()
    return {"type": "symmetricKey", "symmetricKey": keys}


def _cert_entry(entry: Any, previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """One ``X509CertificateWithInfo``: parse a new PEM, or keep the stored one when ``info`` is echoed."""
    if not entry:
        return None
    if not isinstance(entry, dict):
        raise errors.bad_request("X509 certificate entries must be objects.")
    pem = entry.get("certificate")
    if pem:
        try:
            cert = load_certificate(pem)
        except CertificateError as exc:
            raise errors.bad_request(str(exc)) from exc
        return {"certificate": pem, "info": certificate_info(cert)}
    # A GET-modify-PUT round trip echoes {"info": {...}} without the certificate (how the SDKs update).
    thumb = (entry.get("info") or {}).get("sha1Thumbprint")
    if previous and thumb and previous.get("info", {}).get("sha1Thumbprint") == thumb:
        return dict(previous)
    raise errors.bad_request("X509 certificate entry carries neither a certificate nor a known thumbprint.")


def _x509(att: dict[str, Any], old: dict[str, Any] | None, *, group: bool) -> dict[str, Any]:
    x509_in = att.get("x509") or {}
    old_x509 = (old or {}).get("x509") or {}
    out: dict[str, Any] = {}
    for slot in _CERT_SLOTS:
        certs = x509_in.get(slot)
        if not certs:
            continue
        stored = {}
        for which in ("primary", "secondary"):
            kept = _cert_entry(certs.get(which), (old_x509.get(slot) or {}).get(which))
            if kept:
                stored[which] = kept
        if "primary" not in stored:
            raise errors.bad_request(f"x509.{slot}.primary is required.")
        out[slot] = stored
    if x509_in.get("caReferences"):
        out["caReferences"] = dict(x509_in["caReferences"])
    if group and "clientCertificates" in out:
        raise errors.bad_request("Enrollment groups take signingCertificates or caReferences, not clients'.")
    if not out:
        raise errors.bad_request("X509 attestation needs certificates.")
    return {"type": "x509", "x509": out}


def normalize_attestation(att: Any, old: dict[str, Any] | None, *, group: bool) -> dict[str, Any]:
    """Validate an ``AttestationMechanism``; generate symmetric keys; parse certificates."""
    if not isinstance(att, dict):
        raise errors.bad_request("attestation is required.")
    kind = att.get("type")
    if kind == "symmetricKey":
        return _symmetric(att)
    if kind == "x509":
        return _x509(att, old if (old or {}).get("type") == "x509" else None, group=group)
    if kind == "tpm":
        if group:
            raise errors.bad_request("Enrollment groups do not support TPM attestation.")
        tpm = att.get("tpm") or {}
        if not tpm.get("endorsementKey"):
            raise errors.bad_request("tpm.endorsementKey is required.")
        return {"type": "tpm", "tpm": dict(tpm)}
    raise errors.bad_request(f"Unsupported attestation type {kind!r}.")


def normalize(body: Any, url_id: str, old: dict[str, Any] | None, *, group: bool) -> dict[str, Any]:
    """Turn a PUT body into the stored document (without etag/timestamps, which the store sets).

    A body ID that differs from the URL ID (other than by case) is rejected with 400 — not pinned by a
    documented source (docs/azure-behaviour.md §11.2).
    """
    id_field = "enrollmentGroupId" if group else "registrationId"
    validate_id(url_id, id_field)
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    body_id = body.get(id_field)
    if body_id is not None and str(body_id).lower() != url_id.lower():
        raise errors.bad_request(f"{id_field} in the body does not match the URL.")
    doc = {k: v for k, v in body.items() if k not in _READ_ONLY and v is not None}
    doc[id_field] = url_id
    status = doc.setdefault("provisioningStatus", "enabled")
    if status not in _STATUSES:
        raise errors.bad_request(f"provisioningStatus must be one of {_STATUSES}.")
    old_att = (old or {}).get("attestation")
    doc["attestation"] = normalize_attestation(body.get("attestation"), old_att, group=group)
    for name in ("iotHubs",):
        if name in doc and not (isinstance(doc[name], list) and all(isinstance(h, str) for h in doc[name])):
            raise errors.bad_request(f"{name} must be a list of host names.")
    return doc


def public_attestation(att: dict[str, Any]) -> dict[str, Any]:
    """The attestation as DPS answers it: certificates reduced to their ``info``."""
    if att.get("type") != "x509":
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in att.items()}
    x509_out: dict[str, Any] = {}
    for slot, value in att["x509"].items():
        if slot in _CERT_SLOTS:
            x509_out[slot] = {which: {"info": dict(entry["info"])} for which, entry in value.items()}
        else:
            x509_out[slot] = dict(value)
    return {"type": "x509", "x509": x509_out}


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored enrollment/group/record as returned on the wire (internal ``_`` keys dropped)."""
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    if "attestation" in out:
        out["attestation"] = public_attestation(out["attestation"])
    return out


def certificates_of(att: dict[str, Any], slot: str) -> list[str]:
    """PEMs stored under ``x509.<slot>`` (primary first) — used by device matching."""
    if att.get("type") != "x509":
        return []
    entries = att["x509"].get(slot) or {}
    return [entries[w]["certificate"] for w in ("primary", "secondary") if w in entries]

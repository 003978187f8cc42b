"""Shared Access Signature tokens: validation for the emulated services and a maker for tests and devices.

Validation follows docs/azure-behaviour.md (§5), checked against both SDKs: the string to sign is ``sr``
exactly as sent (still URL-encoded) + ``"\\n"`` + ``se``; the signature is base64 HMAC-SHA256 keyed with the
base64-decoded policy/device key. The resource scope is compared case-insensitively on the decoded ``sr``,
segment by segment (a token for ``host`` covers ``host/devices/x``), as the docs describe; the docs'
"lowercase" rule for ``sr`` is not enforced because the SDKs do not lowercase.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote

PREFIX = "SharedAccessSignature "


class SasError(Exception):
    """Why a token was refused; the owning service turns it into its own 401 body."""


@dataclass(frozen=True)
class SasToken:
    """The parsed fields of a token (``sr`` kept URL-encoded, as signed)."""

    sr: str
    sig: str
    se: int
    skn: str | None

    @property
    def resource(self) -> str:
        """The decoded resource URI, lowercased for scope comparison."""
        return unquote(self.sr).lower()


def parse(header: str | None) -> SasToken:
    """Split an ``Authorization`` header value into its fields; SasError when malformed."""
    if not header or not header.startswith(PREFIX):
        raise SasError("missing or non-SAS Authorization header")
    fields: dict[str, str] = {}
    for part in header[len(PREFIX) :].strip().split("&"):
        key, sep, value = part.partition("=")
        if not sep:
            raise SasError("malformed SAS field")
        fields[key] = value
    try:
        return SasToken(fields["sr"], fields["sig"], int(fields["se"]), fields.get("skn"))
    except (KeyError, ValueError) as exc:
        raise SasError("SAS token lacks sr, sig or a numeric se") from exc


def sign(key_b64: str, sr: str, se: int) -> str:
    """Base64 HMAC-SHA256 of ``sr + "\\n" + se`` (not URL-quoted)."""
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SasError("key is not base64") from exc
    digest = hmac.new(key, f"{sr}\n{se}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def scope_covers(token_resource: str, resource: str) -> bool:
    """True when the token's resource equals ``resource`` or is a parent path of it (case-insensitive)."""
    granted = token_resource.lower().rstrip("/")
    wanted = resource.lower().rstrip("/")
    return wanted == granted or wanted.startswith(granted + "/")


def verify(
    header: str | None,
    *,
    resource: str,
    keys_for: Callable[[SasToken], list[str]],
    now: float | None = None,
) -> SasToken:
    """Validate a token for ``resource``; ``keys_for(token)`` returns the candidate keys (empty: unknown).

    Raises SasError on a malformed, expired, out-of-scope or wrongly signed token.
    """
    token = parse(header)
    if token.se <= (time.time() if now is None else now):
        raise SasError("SAS token expired")
    if not scope_covers(token.resource, resource):
        raise SasError("SAS token resource does not match")
    candidates = keys_for(token)
    if not candidates:
        raise SasError("unknown policy or identity")
    presented = unquote(token.sig)
    for key in candidates:
        try:
            expected = sign(key, token.sr, token.se)
        except SasError:
            continue
        if hmac.compare_digest(expected, presented):
            return token
    raise SasError("SAS signature mismatch")


def policy_keys(policies: Mapping[str, tuple[str, ...] | list[str] | str]) -> Callable[[SasToken], list[str]]:
    """A ``keys_for`` for service tokens: ``skn`` must name a policy; its keys are the candidates."""

    def keys_for(token: SasToken) -> list[str]:
        if token.skn is None or token.skn not in policies:
            return []
        value = policies[token.skn]
        return [value] if isinstance(value, str) else list(value)

    return keys_for


def make_token(resource: str, key_b64: str, *, policy: str | None = None, ttl: int = 3600,
               expiry: int | None = None) -> str:
    """Build an ``Authorization`` value the way the SDKs do (``sr`` quote_plus'ed, ``sig`` quote'd).

    ``resource`` is the raw resource URI, e.g. ``127.0.0.1:5000`` or ``127.0.0.1:5000/devices/dev-1``.
    """
    se = expiry if expiry is not None else int(time.time()) + ttl
    sr = quote_plus(resource)
    sig = quote(sign(key_b64, sr, se), safe="/")
    token = f"{PREFIX}sr={sr}&sig={sig}&se={se}"
    return token + (f"&skn={policy}" if policy else "")


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """Symmetric-key group device key: base64(HMAC-SHA256(base64decode(groupKey), registrationId))."""
    key = base64.b64decode(group_key_b64)
    return base64.b64encode(hmac.new(key, registration_id.encode(), hashlib.sha256).digest()).decode()

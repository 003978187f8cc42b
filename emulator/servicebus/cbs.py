"""Claims-based security: the ``$cbs`` node's ``put-token`` with a Service Bus SAS token.

The SDK connects with SASL ANONYMOUS, then sends on ``$cbs`` a message whose application properties are
``operation=put-token``, ``type=jwt`` (or ``servicebus.windows.net:sastoken``), ``name=<audience>``
and whose body is
``SharedAccessSignature sr=<url-encoded audience>&sig=…&se=<expiry>&skn=<policy>``. The signature is
HMAC-SHA256 over ``quote_plus(sr) + "\\n" + se`` keyed with the policy key's UTF-8 bytes (not base64-decoded).
The answer carries ``status-code`` (200 / 401) and ``status-description``; a link to an entity is only
attached when an unexpired token on the same connection covers it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote_plus

SAS_TYPE = "servicebus.windows.net:sastoken"
TOKEN_TYPES = (SAS_TYPE, "jwt")  # the SDK's key credentials announce their SAS tokens as "jwt"


class TokenRejected(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _path(resource: str) -> str:
    """``sb://host[:port]/a/b`` → ``a/b`` (lower case): what a token grants, independent of the host."""
    text = resource.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
        text = text.split("/", 1)[1] if "/" in text else ""
    return text.strip("/")


def covers(granted: str, entity: str) -> bool:
    """A token for ``sb://ns/`` covers every entity, ``sb://ns/q`` covers ``q`` and its sub-queues."""
    root, wanted = _path(granted), _path(entity)
    return not root or wanted == root or wanted.startswith(root + "/")


def verify(token: str, policies: Mapping[str, str], now: float | None = None) -> tuple[str, float]:
    """(audience, expiry) of a valid token; TokenRejected(401) otherwise."""
    text = token.strip()
    if not text.startswith("SharedAccessSignature "):
        raise TokenRejected(401, "InvalidSignature: the token is not a SharedAccessSignature.")
    fields = dict(parse_qsl(text.split(" ", 1)[1], keep_blank_values=True))
    sr, sig, se, skn = (fields.get(k, "") for k in ("sr", "sig", "se", "skn"))
    if not (sr and sig and se.isdigit()):
        raise TokenRejected(401, "InvalidSignature: the token is missing sr, sig or se.")
    key = policies.get(skn)
    if key is None:
        raise TokenRejected(401, f"InvalidSignature: unknown SharedAccessKeyName '{skn}'.")
    expected = base64.b64encode(
        hmac.new(key.encode(), f"{quote_plus(sr)}\n{se}".encode(), hashlib.sha256).digest()
    ).decode()
    if not hmac.compare_digest(expected, sig):
        raise TokenRejected(401, "InvalidSignature: The token has an invalid signature.")
    if int(se) <= (time.time() if now is None else now):
        raise TokenRejected(401, "ExpiredToken: The token is expired.")
    return sr, float(se)


@dataclass
class Grants:
    """Tokens accepted on one connection."""

    tokens: dict[str, float] = field(default_factory=dict)  # audience → expiry

    def add(self, audience: str, expiry: float) -> None:
        self.tokens[audience] = expiry

    def allows(self, entity: str, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        return any(expiry > moment and covers(audience, entity) for audience, expiry in self.tokens.items())


def put_token(
    properties: Mapping[str, object], body: object, policies: Mapping[str, str], grants: Grants
) -> tuple[int, str]:
    """Handle one ``$cbs`` request; returns (status-code, status-description)."""
    if properties.get("operation") != "put-token":
        return 400, f"Unsupported $cbs operation {properties.get('operation')!r}."
    if properties.get("type") not in TOKEN_TYPES:
        return 400, f"Unsupported token type {properties.get('type')!r}."
    token = bytes(body).decode() if isinstance(body, bytes | bytearray | memoryview) else str(body)
    try:
        audience, expiry = verify(token, policies)
    except TokenRejected as exc:
        return exc.status, exc.description
    name = str(properties.get("name") or audience)
    if not covers(audience, name):
        return 401, "InvalidAudience: the token does not cover the requested audience."
    grants.add(name, expiry)
    return 200, "OK"

"""Identity-based storage against Azurite in OAuth mode: the app's own settings resolution and adapters,
with a bearer token instead of a key (docs/azure-behaviour.md §F7, §F10.7).

Azurite checks bearer tokens only over HTTPS and with ``--oauth basic``: it decodes the JWT (no signature
check) and refuses it unless ``iss`` is an Entra ID issuer, ``aud`` is the storage audience and the token is
within ``nbf``..``exp`` (Azurite 3.35 ``QueueTokenAuthenticator`` / ``TableTokenAuthenticator``). So the
token credential below hands out such a token, and a test with an expired one shows Azurite really checks.
The TLS certificate comes from the emulator's private CA, trusted through ``REQUESTS_CA_BUNDLE`` as the
emulator's own tests do. No account key is configured anywhere in these settings.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from devhost.azurite import DEV_ACCOUNT, HOST, AzuriteError, AzuriteHandle, start_azurite
from emulator.tls import ensure_tls
from shared.adapters.audit_tables import TableAuditLease
from shared.adapters.journal_tables import TableJournal
from shared.adapters.poison_queue import StoragePoisonQueue
from shared.adapters.queues import StorageQueueSender, queue_client
from shared.adapters.ratelimit_tables import Budget, TableRateLimiter
from shared.adapters.settings import HOST_STORAGE, JOURNAL_CONNECTION, Connection, Settings
from shared.adapters.storage_connection import require_storage_connection
from shared.errors import AuthFailed

STORAGE_SCOPE = "https://storage.azure.com/.default"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class AzuriteTokenCredential:
    """A ``TokenCredential`` issuing unsigned JWTs of the shape Azurite's basic OAuth check accepts."""

    lifetime: int = 3600
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": f"https://sts.windows.net/{uuid.uuid4()}/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + self.lifetime,
                  "oid": str(uuid.uuid4()), "tid": str(uuid.uuid4())}
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        return AccessToken(token, now + self.lifetime)


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AzuriteHandle, Path]]:
    tls = ensure_tls(tmp_path_factory.mktemp("azurite-tls"))
    try:
        handle = start_azurite(extra_args=["--cert", str(tls.server_cert), "--key", str(tls.server_key),
                                           "--oauth", "basic"])
    except AzuriteError as exc:
        pytest.skip(f"Azurite not available: {exc}")
    try:
        yield handle, tls.ca_cert
    finally:
        handle.stop()


@pytest.fixture
def values(oauth_azurite: tuple[AzuriteHandle, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The template's shape of settings (infra/main.bicep), pointed at Azurite's https endpoints."""
    handle, ca = oauth_azurite
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    queue = f"https://{HOST}:{handle.ports['queue']}/{DEV_ACCOUNT}"
    table = f"https://{HOST}:{handle.ports['table']}/{DEV_ACCOUNT}"
    return {
        f"{HOST_STORAGE}__queueServiceUri": queue,
        f"{HOST_STORAGE}__tableServiceUri": table,
        f"{HOST_STORAGE}__credential": "managedidentity",
        f"{JOURNAL_CONNECTION}__tableServiceUri": table,
        f"{JOURNAL_CONNECTION}__credential": "managedidentity",
    }


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def test_work_queue_and_poison_queue_with_a_bearer_token(values: dict[str, str]) -> None:
    credential = AzuriteTokenCredential()
    host = require_storage_connection(values, HOST_STORAGE)
    assert host.identity_based
    assert host.connection_string is None
    queue = _name("work-")
    StorageQueueSender(host, queue, credential=credential).send({"eventId": "evt-oauth-1"})
    reader = queue_client(host, queue, credential=credential)
    bodies = [json.loads(m.content) for m in reader.receive_messages(max_messages=5)]
    assert bodies == [{"eventId": "evt-oauth-1"}]
    assert STORAGE_SCOPE in {scope for scopes in credential.scopes for scope in scopes}

    poison_name = _name("lifecycle-") + "-poison"
    StorageQueueSender(host, poison_name, credential=credential).send_text('{"eventId":"bad"}')
    poison = StoragePoisonQueue.from_connection(host, poison_name, credential=credential)
    assert poison.count() == 1
    assert [m.body for m in poison.peek()] == ['{"eventId":"bad"}']


def test_journal_budget_and_audit_lease_tables_with_a_bearer_token(values: dict[str, str]) -> None:
    credential = AzuriteTokenCredential()
    journal_connection = Settings.from_mapping(values).journal
    assert isinstance(journal_connection, Connection)
    assert journal_connection.identity_based
    prefix = _name("oauth")
    journal = TableJournal.from_connection(journal_connection, credential=credential, prefix=prefix)
    journal.begin("evt-oauth-2", event_type="lost", target="dev-oauth", source="test", correlation_id="c-1",
                  plan={}, fingerprint="f" * 64)
    record = journal.get("evt-oauth-2")
    assert record is not None
    assert record.target == "dev-oauth"

    limiter = TableRateLimiter.from_connection_string(journal_connection, prefix=prefix,
                                                      credential=credential, default=Budget(6000.0, 10.0))
    assert limiter.acquire("hub-1.azure-devices.net", 1) == 0.0  # the shared bucket's row was written

    lease = TableAuditLease.from_connection_string(journal_connection, prefix=prefix, credential=credential)
    assert lease is not None
    journal.drop_tables()


def test_an_expired_token_is_refused_so_the_check_is_real(values: dict[str, str]) -> None:
    host = require_storage_connection(values, HOST_STORAGE)
    sender = StorageQueueSender(host, _name("expired-"), credential=AzuriteTokenCredential(lifetime=-120))
    with pytest.raises(AuthFailed, match="403"):
        sender.send({"eventId": "never"})

"""Storage clients from one Functions-style connection setting: the one way every storage adapter is built.

A storage connection (``AzureWebJobsStorage``, ``JOURNAL_CONNECTION``, ...) resolves as a binding's
``connection`` does (``settings.resolve_connection``; docs/azure-behaviour.md §F6) into either

* a **connection string** (account key, SAS or Azurite's development account): the SDK's
  ``from_connection_string``; or
* an **identity-based connection** (docs/azure-behaviour.md §F10.7, Microsoft's "Configure an
  identity-based connection" and "Connecting to host storage with an identity" [FD7]):
  ``<NAME>__queueServiceUri`` / ``<NAME>__tableServiceUri`` / ``<NAME>__blobServiceUri`` name the service
  endpoints, or ``<NAME>__accountName`` names the account (endpoints ``https://<account>.<service>.core.
  windows.net``; an explicit service URI wins); ``<NAME>__credential=managedidentity`` with an optional
  ``<NAME>__clientId`` (a user-assigned identity) picks ``ManagedIdentityCredential``, otherwise
  ``DefaultAzureCredential`` (locally: the developer's sign-in, as the host does outside Azure [FD7]).

Errors name the setting and the keys it lacks, never a value: a connection string, key or SAS token never
reaches an exception, a log or a ``repr`` (``Connection.__repr__`` hides them too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from shared.adapters.settings import Connection, SettingsError, resolve_connection

StorageService = Literal["queue", "table", "blob"]
MANAGED_IDENTITY = "managedidentity"  # the one documented value of <NAME>__credential [FD7]


def as_connection(value: str | Connection, name: str = "storage") -> Connection:
    """A ``Connection`` as is; a plain string is a connection string (the adapters' older signature)."""
    if isinstance(value, Connection):
        return value
    if not value.strip():
        raise SettingsError(name, "empty connection string")
    return Connection(name=name, connection_string=value)


def require_storage_connection(values: Mapping[str, str], name: str) -> Connection:
    """Resolve ``name`` like the Functions host; a clear ``SettingsError`` when neither form is set."""
    connection = resolve_connection(values, name)
    if connection is None:
        raise SettingsError(name, (
            f"not set: want a storage connection string in {name} (or ConnectionStrings:{name}), or an "
            f"identity-based connection: {name}__accountName, or {name}__queueServiceUri / "
            f"{name}__tableServiceUri / {name}__blobServiceUri, optionally with "
            f"{name}__credential=managedidentity and {name}__clientId"))
    return connection


def service_endpoint(connection: Connection, service: StorageService) -> str:
    """The ``service`` endpoint of an identity-based connection: ``__<service>ServiceUri``, else derived
    from ``__accountName`` (``Connection.service_uri``); a ``SettingsError`` naming the missing keys."""
    uri = connection.service_uri(service)
    if uri is None:
        raise SettingsError(connection.name, (
            f"identity-based, but neither {connection.name}__{service}ServiceUri nor "
            f"{connection.name}__accountName is set"))
    if not uri.lower().startswith(("https://", "http://")):
        raise SettingsError(f"{connection.name}__{service}ServiceUri", "want an absolute https:// URI")
    return uri


def token_credential(connection: Connection) -> Any:
    """The azure-identity credential an identity-based connection asks for.

    ``__credential=managedidentity`` (or a ``__clientId`` on its own): ``ManagedIdentityCredential``, the
    user-assigned identity when ``__clientId`` names one, else the system-assigned one. Neither:
    ``DefaultAzureCredential`` (environment, workload identity, managed identity, developer tools). No
    network until the first token is requested."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    kind = connection.property("credential").lower()
    client_id = connection.property("clientId") or None
    if kind and kind != MANAGED_IDENTITY:
        raise SettingsError(f"{connection.name}__credential", "the only supported value is managedidentity")
    if kind == MANAGED_IDENTITY or client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


def _from_string(build: Any, connection: Connection, *args: Any, **options: Any) -> Any:
    assert connection.connection_string is not None  # noqa: S101 - callers checked
    try:
        return build(connection.connection_string, *args, **options)
    except ValueError:  # the SDK's message does not echo the string; ours names only the setting
        raise SettingsError(connection.name, "not a valid storage connection string") from None


def queue_client(connection: str | Connection, queue_name: str, *, credential: Any = None,
                 **options: Any) -> QueueClient:
    """A ``QueueClient`` for ``queue_name``; ``credential`` replaces the identity-based connection's own
    (tests against Azurite's OAuth mode); ``options`` go to the SDK (api_version, policies, retries)."""
    conn = as_connection(connection)
    if conn.connection_string is not None:
        return _from_string(QueueClient.from_connection_string, conn, queue_name, **options)
    return QueueClient(service_endpoint(conn, "queue"), queue_name,
                       credential=credential or token_credential(conn), **options)


def table_service(connection: str | Connection, *, credential: Any = None,
                  **options: Any) -> TableServiceClient:
    """A ``TableServiceClient`` for the connection's account (see ``queue_client``)."""
    conn = as_connection(connection)
    if conn.connection_string is not None:
        return _from_string(TableServiceClient.from_connection_string, conn, **options)
    return TableServiceClient(endpoint=service_endpoint(conn, "table"),
                              credential=credential or token_credential(conn), **options)

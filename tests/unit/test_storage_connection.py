"""shared.adapters.storage_connection: one Functions-style storage setting, two forms (docs/azure-behaviour.md
§F10.7), and errors that name settings, never their values. Nothing here opens a connection: clients are
only built (the SDKs and azure-identity do no I/O until the first request or token)."""

from __future__ import annotations

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.adapters import storage_connection as sc
from shared.adapters.poison_queue import StoragePoisonQueue
from shared.adapters.queues import StorageQueueSender, queue_client
from shared.adapters.settings import HOST_STORAGE, Settings, SettingsError, resolve_connection
from unprovision.wiring import storage_account

# A made-up key (base64 of "not-a-real-key"): it must never appear in an error, a repr or a log.
KEY = "bm90LWEtcmVhbC1rZXk="
CONN = (f"DefaultEndpointsProtocol=https;AccountName=stexample;AccountKey={KEY};"
        "EndpointSuffix=core.windows.net")
CLIENT_ID = "00000000-0000-0000-0000-00000000c11d"


def identity(**props: str) -> dict[str, str]:
    return {f"{HOST_STORAGE}__{k}": v for k, v in props.items()}


def test_connection_string_form_builds_key_clients() -> None:
    connection = sc.require_storage_connection({HOST_STORAGE: CONN}, HOST_STORAGE)
    assert not connection.identity_based
    client = queue_client(connection, "device-lifecycle-work")
    assert client.url == "https://stexample.queue.core.windows.net/device-lifecycle-work"
    assert client.credential.account_name == "stexample"  # shared key, from the string
    table = sc.table_service(connection)
    assert table.url.startswith("https://stexample.table.core.windows.net")
    assert KEY not in repr(connection)


def test_account_name_form_derives_every_endpoint_and_uses_the_user_assigned_identity() -> None:
    values = identity(accountName="stexample", credential="managedidentity", clientId=CLIENT_ID)
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    assert connection.identity_based
    for service in ("queue", "table", "blob"):
        assert sc.service_endpoint(connection, service) == f"https://stexample.{service}.core.windows.net"
    credential = sc.token_credential(connection)
    assert isinstance(credential, ManagedIdentityCredential)
    client = queue_client(connection, "device-lifecycle")
    assert client.url == "https://stexample.queue.core.windows.net/device-lifecycle"
    assert isinstance(client.credential, ManagedIdentityCredential)


def test_explicit_service_uris_win_over_the_account_name() -> None:
    values = identity(accountName="ignored", queueServiceUri="https://q.example.net/",
                      tableServiceUri="https://t.example.net")
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    assert sc.service_endpoint(connection, "queue") == "https://q.example.net/"
    assert sc.service_endpoint(connection, "table") == "https://t.example.net"
    assert sc.service_endpoint(connection, "blob") == "https://ignored.blob.core.windows.net"


def test_property_names_are_case_insensitive_like_the_host_configuration() -> None:
    connection = sc.require_storage_connection(identity(accountname="stexample"), HOST_STORAGE)
    assert sc.service_endpoint(connection, "queue") == "https://stexample.queue.core.windows.net"


def test_without_credential_setting_default_azure_credential_is_used() -> None:
    connection = sc.require_storage_connection(identity(accountName="stexample"), HOST_STORAGE)
    assert isinstance(sc.token_credential(connection), DefaultAzureCredential)


def test_client_id_alone_still_picks_that_managed_identity() -> None:
    connection = sc.require_storage_connection(identity(accountName="a1", clientId=CLIENT_ID), HOST_STORAGE)
    assert isinstance(sc.token_credential(connection), ManagedIdentityCredential)


def test_unknown_credential_kind_is_refused() -> None:
    connection = sc.require_storage_connection(identity(accountName="a1", credential="clientsecret"),
                                               HOST_STORAGE)
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__credential: the only supported value"):
        sc.token_credential(connection)


def test_neither_form_gives_a_clear_error_listing_both() -> None:
    with pytest.raises(SettingsError) as info:
        sc.require_storage_connection({"OTHER": CONN}, HOST_STORAGE)
    message = str(info.value)
    assert message.startswith("setting AzureWebJobsStorage: not set")
    for key in ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__queueServiceUri",
                "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__credential=managedidentity",
                "AzureWebJobsStorage__clientId"):
        assert key in message
    assert KEY not in message


def test_identity_based_without_the_needed_endpoint_names_the_missing_keys() -> None:
    values = identity(tableServiceUri="https://t.example.net", clientId=CLIENT_ID,
                      credential="managedidentity")
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    with pytest.raises(SettingsError) as info:
        StorageQueueSender(connection, "device-lifecycle-work")
    message = str(info.value)
    assert "AzureWebJobsStorage__queueServiceUri" in message
    assert "AzureWebJobsStorage__accountName" in message
    assert "t.example.net" not in message
    assert CLIENT_ID not in message


def test_a_relative_service_uri_is_refused_without_echoing_it() -> None:
    values = identity(queueServiceUri="q.example.net/sig=abc")
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    with pytest.raises(SettingsError) as info:
        sc.service_endpoint(connection, "queue")
    assert "AzureWebJobsStorage__queueServiceUri" in str(info.value)
    assert "sig=abc" not in str(info.value)


def test_a_malformed_connection_string_is_refused_without_echoing_it() -> None:
    connection = resolve_connection({"JOURNAL_CONNECTION": f"AccountKey={KEY};Foo=bar"}, "JOURNAL_CONNECTION")
    assert connection is not None
    with pytest.raises(SettingsError) as info:
        sc.table_service(connection)
    assert str(info.value) == "setting JOURNAL_CONNECTION: not a valid storage connection string"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    with pytest.raises(SettingsError) as info:
        StoragePoisonQueue.from_connection(connection, "device-lifecycle-poison")
    assert KEY not in str(info.value)


def test_connection_strings_section_and_indirection_resolve_like_the_host() -> None:
    values = {f"ConnectionStrings:{HOST_STORAGE}": CONN}
    assert sc.require_storage_connection(values, HOST_STORAGE).connection_string == CONN
    values = {HOST_STORAGE: "MyStorage", "MyStorage__accountName": "stother"}
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    assert sc.service_endpoint(connection, "queue") == "https://stother.queue.core.windows.net"


def test_an_empty_plain_connection_string_is_refused() -> None:
    with pytest.raises(SettingsError, match="empty connection string"):
        StorageQueueSender("  ", "device-lifecycle")


def test_poison_queue_and_sender_accept_an_identity_connection() -> None:
    values = identity(accountName="stexample", credential="managedidentity")
    connection = sc.require_storage_connection(values, HOST_STORAGE)
    poison = StoragePoisonQueue.from_connection(connection, "device-lifecycle-poison")
    assert poison.name == "device-lifecycle-poison"


def test_the_app_takes_its_queues_from_identity_based_host_storage() -> None:
    """The template's settings (infra/main.bicep): host storage by account name, journal by table URI."""
    values = {**identity(accountName="stexample", credential="managedidentity", clientId=CLIENT_ID),
              "JOURNAL_CONNECTION__tableServiceUri": "https://stexample.table.core.windows.net/",
              "JOURNAL_CONNECTION__credential": "managedidentity",
              "JOURNAL_CONNECTION__clientId": CLIENT_ID}
    settings = Settings.from_mapping(values)
    host = storage_account(settings, values)
    assert host is not None
    assert host.name == HOST_STORAGE
    assert host.identity_based
    assert sc.service_endpoint(host, "queue") == "https://stexample.queue.core.windows.net"
    assert settings.journal is not None
    assert sc.service_endpoint(settings.journal, "table") == "https://stexample.table.core.windows.net/"
    # Without host storage the journal's account carries the queues too (CLI with --emulator).
    only_journal = {k: v for k, v in values.items() if not k.startswith(HOST_STORAGE)}
    assert storage_account(Settings.from_mapping(only_journal), only_journal) is not None

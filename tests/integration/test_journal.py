"""The Journal contract over both implementations, plus what only Table storage can show.

The contract functions live in ``journal_contract.py``; importing them here makes pytest run each
once per implementation (``journal`` is parametrised: memory, tables on Azurite).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableServiceClient

from devhost.azurite import DEV_ACCOUNT, DEV_ACCOUNT_KEY, AzuriteHandle
from shared.adapters.journal_format import encode_key
from shared.adapters.journal_memory import InMemoryJournal
from shared.adapters.journal_tables import TableJournal
from shared.adapters.settings import Connection, Settings, SettingsError
from shared.errors import AuthFailed, Transient
from tests.integration import journal_contract
from tests.integration.journal_contract import START, ManualClock, begin, step
from tests.support.azurite_fixtures import unique_prefix

globals().update({
    "test_" + name.removeprefix("contract_"): fn
    for name, fn in vars(journal_contract).items() if name.startswith("contract_")
})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["memory", "tables"])
def journal(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryJournal(clock=clock)
        return
    azurite: AzuriteHandle = request.getfixturevalue("azurite")
    # A tiny page size makes every listing cross page boundaries (continuation tokens are exercised).
    tables = TableJournal.from_connection_string(
        azurite.connection_string, prefix=unique_prefix(), clock=clock, page_size=2
    )
    yield tables
    tables.drop_tables()


def test_table_fixture_gives_each_test_its_own_tables(table_journal: TableJournal) -> None:
    begin(table_journal, "evt-own")
    assert [r.event_id for r in table_journal.iter_events()] == ["evt-own"]


def test_concurrent_retries_of_one_step_each_keep_an_attempt_row(
    azurite: AzuriteHandle, table_journal: TableJournal
) -> None:
    begin(table_journal, "evt-1")
    barrier = threading.Barrier(4)

    def retry(n: int) -> None:
        barrier.wait(timeout=10)
        table_journal.record_step("evt-1", step(0, error=f"attempt {n}"))

    threads = [threading.Thread(target=retry, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.get_table_client(table_journal._events.table_name)
    rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": encode_key("evt-1")}))
    assert sorted(r["RowKey"] for r in rows) == [
        "event", "step-000000-0001", "step-000000-0002", "step-000000-0003", "step-000000-0004"]
    first = min((r for r in rows if r["RowKey"] != "event"), key=lambda r: r["RowKey"])
    assert table_journal.get("evt-1").steps[0].error == first["Error"], "the first success stands"
    assert table_journal.get("evt-1").status == "in_progress"


def test_a_lost_target_index_row_is_rewritten_on_redelivery(
    azurite: AzuriteHandle, table_journal: TableJournal
) -> None:
    begin(table_journal, "evt-1", target="dev-9")
    table_journal.finish("evt-1", "completed")
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    targets = service.get_table_client(table_journal._targets.table_name)
    for row in list(targets.list_entities()):
        targets.delete_entity(row["PartitionKey"], row["RowKey"])  # as if we crashed after the header
    assert list(table_journal.history("dev-9")) == []
    begin(table_journal, "evt-1", target="dev-9")
    assert [r.event_id for r in table_journal.history("DEV-9")] == ["evt-1"]


def test_a_wrong_account_key_is_auth_failed_not_retried(azurite: AzuriteHandle) -> None:
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    with pytest.raises(AuthFailed):
        TableJournal.from_connection_string(wrong, prefix=unique_prefix())


def test_an_unreachable_store_is_transient_after_bounded_retries() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    journal = TableJournal.from_connection_string(conn, prefix=unique_prefix(), create_tables=False)
    with pytest.raises(Transient):
        journal.get("evt-1")


def test_settings_journal_connection_opens_a_table_journal(azurite: AzuriteHandle) -> None:
    settings = Settings.from_mapping({"AzureWebJobsStorage": azurite.connection_string})
    assert settings.journal is not None
    journal = TableJournal.from_connection(settings.journal, prefix=unique_prefix())
    begin(journal, "evt-settings")
    assert journal.get("evt-settings") is not None
    journal.drop_tables()


def test_account_url_with_a_credential_object_reaches_the_same_store(azurite: AzuriteHandle) -> None:
    prefix = unique_prefix()
    by_string = TableJournal.from_connection_string(azurite.connection_string, prefix=prefix)
    begin(by_string, "evt-url")
    credential = AzureNamedKeyCredential(DEV_ACCOUNT, DEV_ACCOUNT_KEY)
    by_url = TableJournal.from_account_url(azurite.table_url, credential, prefix=prefix, create_tables=False)
    assert by_url.get("evt-url") == by_string.get("evt-url")
    by_string.drop_tables()


def test_identity_connection_without_a_table_endpoint_is_a_settings_error() -> None:
    connection = Connection(name="JOURNAL_CONNECTION", properties={"credential": "managedidentity"})
    with pytest.raises(SettingsError, match="tableServiceUri"):
        TableJournal.from_connection(connection)

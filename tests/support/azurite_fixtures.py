"""Pytest plugin: in-memory Azurites for the test session (one with blob), a fresh ``TableJournal`` a test.

Each journal gets its own table prefix, so tests never see each other's rows and need no clean-up
beyond dropping their tables (done at teardown, best effort).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from devhost.azurite import AzuriteHandle, start_azurite
from shared.adapters.journal_tables import TableJournal
from shared.errors import UnprovisionError


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteHandle]:
    """Azurite (queue + table) on free 127.0.0.1 ports, in memory, for the whole session."""
    handle = start_azurite()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def blob_store() -> Iterator[AzuriteHandle]:
    """A second Azurite with blob as well (queue + table + blob), for the tests whose import jobs need
    containers in the app's storage account; one for the whole session."""
    handle = start_azurite(blob=True)
    try:
        yield handle
    finally:
        handle.stop()


def unique_prefix() -> str:
    """A table-name prefix no other test uses (letters and digits only, starts with a letter)."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def table_journal(azurite: AzuriteHandle) -> Iterator[TableJournal]:
    """A ``TableJournal`` on its own tables in the session's Azurite."""
    journal = TableJournal.from_connection_string(azurite.connection_string, prefix=unique_prefix())
    yield journal
    with contextlib.suppress(UnprovisionError):
        journal.drop_tables()

"""The Azurite launcher: free loopback ports, usable endpoints, persistence, clean stop, clear errors."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from devhost.azurite import AzuriteError, AzuriteHandle, bin_dir, start_azurite


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_session_azurite_serves_queues_and_tables_on_loopback(azurite: AzuriteHandle) -> None:
    assert set(azurite.ports) == {"queue", "table"}
    assert azurite.queue_url.startswith("http://127.0.0.1:")
    assert azurite.blob_url is None
    assert "BlobEndpoint" not in azurite.connection_string
    queue = QueueClient.from_connection_string(azurite.connection_string, "launcher-probe")
    queue.create_queue()
    queue.send_message("hello")
    assert [m.content for m in queue.receive_messages()] == ["hello"]
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    table = tables.create_table_if_not_exists("launcherprobe")
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "V": 7})
    assert table.get_entity("p", "r")["V"] == 7


def test_persisted_azurite_with_blob_writes_its_state_and_stops_cleanly(tmp_path: Path) -> None:
    started = time.monotonic()
    handle = start_azurite(blob=True, location=tmp_path / "state")
    elapsed = time.monotonic() - started
    try:
        assert set(handle.ports) == {"queue", "table", "blob"}
        assert len(set(handle.ports.values())) == 3
        assert all(_accepts(port) for port in handle.ports.values())
        assert f"BlobEndpoint={handle.blob_url}" in handle.connection_string
        tables = TableServiceClient.from_connection_string(handle.connection_string)
        tables.create_table_if_not_exists("persisted").upsert_entity({"PartitionKey": "p", "RowKey": "r"})
    finally:
        handle.stop()
    assert elapsed < 5, f"start-up took {elapsed:.1f} s"
    assert all(proc.poll() is not None for proc in handle.processes)
    assert not any(_accepts(port) for port in handle.ports.values())
    assert any(p.name.startswith("__azurite_db_table") for p in (tmp_path / "state").iterdir())


def test_missing_node_modules_says_to_run_make_setup(tmp_path: Path) -> None:
    with pytest.raises(AzuriteError, match="make setup"):
        bin_dir(tmp_path)

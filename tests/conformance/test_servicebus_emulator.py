"""``python -m emulator`` starts the Service Bus stand-in and describes it in emulator.json."""

from __future__ import annotations

import json
from pathlib import Path

from azure.servicebus import ServiceBusMessage

from emulator.options import Options
from emulator.server import CONFIG_FILE, Emulator
from shared.adapters.servicebus_connect import client_from_connection_string


def test_emulator_json_carries_a_working_service_bus_connection(tmp_path: Path) -> None:
    emu = Emulator(Options(state_dir=tmp_path, hubs=1, tier="off"))
    config = emu.start()
    try:
        written = json.loads((tmp_path / CONFIG_FILE).read_text())
        block = written["serviceBus"]
        assert block == config["serviceBus"]
        assert block["connectionString"].startswith(
            f"Endpoint=sb://{block['hostName']}/;SharedAccessKeyName="
        )
        with client_from_connection_string(block["connectionString"], ca_bundle=block["caBundle"]) as client:
            with client.get_queue_sender("created-on-first-use") as sender:
                sender.send_messages(ServiceBusMessage("hello"))
            with client.get_queue_receiver("created-on-first-use") as receiver:
                [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=2)
                receiver.complete_message(msg)
        assert str(msg) == "hello"
    finally:
        emu.stop()

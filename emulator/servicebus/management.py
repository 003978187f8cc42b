"""The ``<entity>/$management`` node: the request/response operations the SDK's receiver uses.

Supported: ``com.microsoft:renew-lock`` (``lock-tokens`` → ``expirations``). Anything else answers 501
(``com.microsoft:not-implemented`` is not raised by the SDK as anything more specific than ServiceBusError).
"""

from __future__ import annotations

import uuid
from typing import Any

from proton import UNDESCRIBED, Array, Data, Message

from emulator.servicebus.broker import Broker
from emulator.servicebus.entities import EntityError
from emulator.servicebus.sections import ms_timestamp

RENEW_LOCK = "com.microsoft:renew-lock"


def _tokens(body: Any) -> list[uuid.UUID]:
    raw = (body or {}).get("lock-tokens") if isinstance(body, dict) else None
    items = raw.elements if isinstance(raw, Array) else list(raw or [])
    return [item if isinstance(item, uuid.UUID) else uuid.UUID(str(item)) for item in items]


class Management:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, entity: str, request: Message) -> tuple[int, str, Any]:
        operation = str((request.properties or {}).get("operation") or "")
        if operation == RENEW_LOCK:
            try:
                expirations = [
                    ms_timestamp(self.broker.renew(entity, token)) for token in _tokens(request.body)
                ]
            except EntityError as exc:
                return 410, exc.description, None
            return 200, "OK", {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expirations)}
        return 501, f"The operation '{operation}' is not supported by the local stand-in.", None

"""In-memory audit stores and poison queue: the fakes-free stand-ins used by unit tests and ``--memory`` runs.

Same contracts as the Table adapters (``audit_tables.py``): reports newest first, suppressions keyed by
(check, lower-cased resource), ``put`` replaces.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shared.ports import PoisonMessage, SuppressionRecord


class InMemoryAuditReportStore:
    """``AuditReportStore`` in a list; documents are copied through JSON, as a real store would."""

    def __init__(self) -> None:
        self._reports: list[str] = []
        self._lock = threading.Lock()

    def save(self, report: Mapping[str, Any]) -> None:
        with self._lock:
            self._reports.append(json.dumps(report, sort_keys=True))

    def get(self, report_id: str) -> Mapping[str, Any] | None:
        return next((r for r in self.iter_reports() if r.get("reportId") == report_id), None)

    def iter_reports(self, limit: int | None = None) -> Iterator[Mapping[str, Any]]:
        with self._lock:
            newest_first = list(reversed(self._reports))
        for text in newest_first[:limit]:
            yield json.loads(text)


class InMemorySuppressionStore:
    """``SuppressionStore`` in a dict keyed by (check, lower-cased resource)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], SuppressionRecord] = {}
        self._lock = threading.Lock()

    def put(self, suppression: SuppressionRecord) -> None:
        with self._lock:
            self._items[(suppression.check, suppression.resource.lower())] = suppression

    def delete(self, check: str, resource: str) -> bool:
        with self._lock:
            return self._items.pop((check, resource.lower()), None) is not None

    def iter_all(self) -> Iterator[SuppressionRecord]:
        with self._lock:
            items = sorted(self._items.values(), key=lambda s: (s.check, s.resource.lower()))
        yield from items


class InMemoryPoisonQueue:
    """``PoisonQueue`` over a list; ``add`` stands in for the host moving a message to the poison queue."""

    def __init__(self, name: str = "lifecycle-poison") -> None:
        self._name = name
        self.messages: list[PoisonMessage] = []

    @property
    def name(self) -> str:
        return self._name

    def add(self, message_id: str, body: str = "", dequeue_count: int = 5) -> None:
        self.messages.append(PoisonMessage(message_id, dequeue_count, None, body))

    def count(self) -> int:
        return len(self.messages)

    def peek(self, n: int = 5) -> Sequence[PoisonMessage]:
        return tuple(self.messages[: max(0, min(n, 32))])

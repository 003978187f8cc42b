"""Event health: every poison queue the app owns (lifecycle and work queue), and events left unfinished."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.audit import check_poison, check_stuck
from shared.lifecycle import EventStatus
from shared.ports import PoisonQueue
from unprovision.audit.reader import AuditReader

_UNFINISHED = (EventStatus.RECEIVED, EventStatus.IN_PROGRESS)


def check_poison_queues(reader: AuditReader, queues: Sequence[PoisonQueue]) -> None:
    for queue in queues:
        reader.guard(f"poison queue {queue.name}", lambda q=queue: _one_queue(reader, q))  # type: ignore[misc]


def _one_queue(reader: AuditReader, queue: PoisonQueue) -> None:
    count = queue.count()
    sample = [m.message_id for m in queue.peek(5)] if count else []
    reader.found.add(check_poison(queue.name, count, sample))


def check_stuck_events(reader: AuditReader, now: datetime) -> None:
    """Events ``received``/``in_progress`` not updated for longer than ``stuck_after_minutes``."""
    threshold = timedelta(minutes=reader.cfg.stuck_after_minutes)
    for status in _UNFINISHED:
        for record in reader.journal.iter_events(status=status.value):
            reader.found.add(check_stuck(record, now, threshold))  # the collector caps the listed ones

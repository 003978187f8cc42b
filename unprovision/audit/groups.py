"""Group checks: signing-certificate expiry, enabled parents above disabled or deleted groups, and the
registration records deleted groups leave behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.audit import GroupSnapshot, check_orphans, check_parent_group, check_signing_certs
from unprovision.audit.reader import AuditReader


def check_groups(reader: AuditReader, now: datetime) -> None:
    present = {g.group_id.lower() for g in reader.groups}
    for group in reader.groups:
        reader.found.add(check_signing_certs(group, now, reader.cfg.cert_threshold_days))
        reader.found.add(check_parent_group(group, False, reader.groups))
    for key, snapshot in reader.known_groups.items():
        if key in present:
            continue
        if snapshot.certificates:
            reader.found.add(check_parent_group(snapshot.as_group(), True, reader.groups))
        reader.guard(f"orphaned registrations of {snapshot.group_id}", _orphans(reader, snapshot))


def _orphans(reader: AuditReader, snapshot: GroupSnapshot) -> Callable[[], None]:
    def count() -> None:
        n, sample = 0, list[str]()
        for reg in reader.group_records(snapshot.group_id):
            n += 1
            if len(sample) < 5:
                sample.append(reg.registration_id)
        reader.found.add(check_orphans(snapshot.group_id, n, sample))

    return count

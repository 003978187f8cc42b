"""Fast bulk seeding of DPS state for the admin API and benchmarks (100k records in about a second).

Seeding bypasses the HTTP layer and the per-request ETag checks but keeps the validation of ``models``, so
seeded documents look exactly like ones created through the service API. Registration records take the wire
shape plus an optional ``enrollmentGroupId`` naming the group that produced them (omit it for individual
enrollments).
"""

from __future__ import annotations

import uuid
from typing import Any

from emulator.dps import errors, models


def seed_enrollments(enrollments: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]],
                     items: list[dict[str, Any]]) -> int:
    """Insert or replace enrollments (items with ``registrationId``) and groups (``enrollmentGroupId``)."""
    now = errors.now_utc()
    for item in items:
        group = "enrollmentGroupId" in item
        target = groups if group else enrollments
        doc_id = str(item.get("enrollmentGroupId" if group else "registrationId", ""))
        doc = models.normalize(item, doc_id, target.get(doc_id.lower()), group=group)
        doc["createdDateTimeUtc"] = doc["lastUpdatedDateTimeUtc"] = now
        doc["etag"] = f'"{uuid.uuid4()}"'
        target[doc_id.lower()] = doc
    return len(items)


def seed_registrations(records: dict[str, dict[str, Any]], items: list[dict[str, Any]]) -> int:
    """Insert or replace registration records; ``registrationId`` and ``assignedHub`` are required."""
    now = errors.now_utc()
    for item in items:
        reg_id = models.validate_id(item.get("registrationId"), "registrationId")
        hub = item.get("assignedHub")
        if not isinstance(hub, str) or not hub:
            raise errors.bad_request(f"assignedHub is required for {reg_id!r}.")
        records[reg_id.lower()] = {
            "registrationId": reg_id,
            "createdDateTimeUtc": item.get("createdDateTimeUtc", now),
            "assignedHub": hub,
            "deviceId": item.get("deviceId", reg_id),
            "status": item.get("status", "assigned"),
            "substatus": item.get("substatus", "initialAssignment"),
            "etag": f'"{uuid.uuid4()}"',
            "lastUpdatedDateTimeUtc": item.get("lastUpdatedDateTimeUtc", now),
            "_enrollmentGroupId": item.get("enrollmentGroupId") or item.get("_enrollmentGroupId"),
        }
    return len(items)

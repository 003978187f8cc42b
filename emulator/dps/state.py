"""In-memory DPS state: individual enrollments, enrollment groups, registration records, device operations.

Thread-safe behind one re-entrant lock (the server is a ThreadingHTTPServer). Keys are lower-cased IDs because
DPS registration and group IDs are case-insensitive (docs/azure-behaviour.md §2); the documents keep the
caller's spelling.

ETags are opaque strings already wrapped in double quotes; If-Match compares exactly, after tolerating a
missing pair of quotes, and accepts ``*`` (docs/azure-behaviour.md §3.4, §10.2). If-Match on a missing
document answers 412 (RFC 7232) — not pinned by a documented source. Deleting an enrollment or a group keeps
the registration records it produced (documented for groups, D1/D2; assumed for individual
enrollments, §11.4).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from typing import Any

from emulator.dps import errors, models
from emulator.dps.paging import Pager

ENROLLMENTS = "enrollments"
GROUPS = "groups"
REGISTRATIONS = "registrations"
_MAX_OPERATIONS = 10_000


def new_etag() -> str:
    return f'"{uuid.uuid4()}"'


def etag_matches(stored: str, if_match: str) -> bool:
    """Exact comparison; ``*``/``"*"`` match anything; a bare value matches its quoted form."""
    if if_match.strip() in ("*", '"*"'):
        return True
    return stored in (if_match, f'"{if_match}"')


class DpsState:
    """All DPS data of one emulated service instance."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, dict[str, Any]]] = {ENROLLMENTS: {}, GROUPS: {}, REGISTRATIONS: {}}
        self._operations: dict[str, dict[str, Any]] = {}
        self._pager = Pager()

    # ----- generic document store -------------------------------------------------------------------
    def _get(self, kind: str, doc_id: str, code: int) -> dict[str, Any]:
        doc = self._docs[kind].get(doc_id.lower())
        if doc is None:
            raise errors.not_found(code, f"{kind[:-1].capitalize()} {doc_id!r} not found.")
        return doc

    def _check_if_match(self, current: dict[str, Any] | None, if_match: str | None) -> None:
        if if_match is None:
            return
        if current is None or not etag_matches(current["etag"], if_match):
            raise errors.precondition_failed()

    def _put(self, kind: str, doc_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
        group = kind == GROUPS
        with self._lock:
            current = self._docs[kind].get(doc_id.lower())
            self._check_if_match(current, if_match)
            doc = models.normalize(body, doc_id, current, group=group)
            if group:
                self._check_unique_signers(doc)
            now = errors.now_utc()
            doc["createdDateTimeUtc"] = current["createdDateTimeUtc"] if current else now
            doc["lastUpdatedDateTimeUtc"] = now
            doc["etag"] = new_etag()
            self._docs[kind][doc_id.lower()] = doc
            self._pager.invalidate()
            return doc

    def _delete(self, kind: str, doc_id: str, if_match: str | None, code: int) -> None:
        with self._lock:
            current = self._get(kind, doc_id, code)
            self._check_if_match(current, if_match)
            del self._docs[kind][doc_id.lower()]
            self._pager.invalidate()

    def _check_unique_signers(self, doc: dict[str, Any]) -> None:
        """A certificate may back at most one enrollment entry per DPS instance (D3) → 409."""
        mine = {e["info"]["sha1Thumbprint"] for e in _signers(doc)}
        for other in self._docs[GROUPS].values():
            if other["enrollmentGroupId"].lower() == doc["enrollmentGroupId"].lower():
                continue
            if mine & {e["info"]["sha1Thumbprint"] for e in _signers(other)}:
                raise errors.ServiceError(409, errors.CONFLICT, "Certificate used by another enrollment.")

    # ----- individual enrollments -------------------------------------------------------------------
    def put_enrollment(self, reg_id: str, body: Any, if_match: str | None = None) -> dict[str, Any]:
        """Create or wholesale-replace an individual enrollment; returns the public view."""
        with self._lock:
            return self._enrollment_view(self._put(ENROLLMENTS, reg_id, body, if_match))

    def get_enrollment(self, reg_id: str) -> dict[str, Any]:
        with self._lock:
            return self._enrollment_view(self._get(ENROLLMENTS, reg_id, errors.ENROLLMENT_NOT_FOUND))

    def delete_enrollment(self, reg_id: str, if_match: str | None = None) -> None:
        self._delete(ENROLLMENTS, reg_id, if_match, errors.ENROLLMENT_NOT_FOUND)

    def enrollment_attestation(self, reg_id: str) -> dict[str, Any]:
        with self._lock:
            doc = self._get(ENROLLMENTS, reg_id, errors.ENROLLMENT_NOT_FOUND)
            return models.public_attestation(doc["attestation"])

    def _enrollment_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        view = models.public_view(doc)
        record = self._docs[REGISTRATIONS].get(doc["registrationId"].lower())
        if record is not None and not record.get("_enrollmentGroupId"):
            view["registrationState"] = models.public_view(record)
        return view

    def bulk(self, mode: str, enrollments: list[Any]) -> dict[str, Any]:
        """``BulkEnrollmentOperation``: per-item errors instead of failing the whole call."""
        failures = []
        with self._lock:
            for item in enrollments:
                reg_id = item.get("registrationId") if isinstance(item, dict) else None
                try:
                    self._bulk_one(mode, str(reg_id or ""), item)
                except errors.ServiceError as err:
                    failures.append(
                        {"registrationId": reg_id, "errorCode": err.code, "errorStatus": err.message})
        return {"isSuccessful": not failures, "errors": failures}

    def _bulk_one(self, mode: str, reg_id: str, item: dict[str, Any]) -> None:
        models.validate_id(reg_id, "registrationId")
        exists = reg_id.lower() in self._docs[ENROLLMENTS]
        if mode == "create":
            if exists:
                raise errors.ServiceError(409, errors.CONFLICT, f"Enrollment {reg_id!r} already exists.")
            self._put(ENROLLMENTS, reg_id, item, None)
        elif mode == "update":
            self._put(ENROLLMENTS, reg_id, item, None)
        elif mode == "updateIfMatchETag":
            self._put(ENROLLMENTS, reg_id, item, item.get("etag") or None)
        elif mode == "delete":
            self._delete(ENROLLMENTS, reg_id, None, errors.ENROLLMENT_NOT_FOUND)
        else:
            raise errors.bad_request(f"Unknown bulk mode {mode!r}.")

    # ----- enrollment groups ------------------------------------------------------------------------
    def put_group(self, group_id: str, body: Any, if_match: str | None = None) -> dict[str, Any]:
        return models.public_view(self._put(GROUPS, group_id, body, if_match))

    def get_group(self, group_id: str) -> dict[str, Any]:
        with self._lock:
            return models.public_view(self._get(GROUPS, group_id, errors.GROUP_NOT_FOUND))

    def delete_group(self, group_id: str, if_match: str | None = None) -> None:
        self._delete(GROUPS, group_id, if_match, errors.GROUP_NOT_FOUND)

    def group_attestation(self, group_id: str) -> dict[str, Any]:
        with self._lock:
            doc = self._get(GROUPS, group_id, errors.GROUP_NOT_FOUND)
            return models.public_attestation(doc["attestation"])

    # ----- registration records ---------------------------------------------------------------------
    def get_registration(self, reg_id: str) -> dict[str, Any]:
        with self._lock:
            return models.public_view(self._get(REGISTRATIONS, reg_id, errors.REGISTRATION_NOT_FOUND))

    def delete_registration(self, reg_id: str, if_match: str | None = None) -> None:
        self._delete(REGISTRATIONS, reg_id, if_match, errors.REGISTRATION_NOT_FOUND)

    def record_registration(self, reg_id: str, device_id: str, hub: str,
                            group_id: str | None) -> dict[str, Any]:
        """Create or update the record of a successful device registration; returns the public view."""
        with self._lock:
            old = self._docs[REGISTRATIONS].get(reg_id.lower())
            now = errors.now_utc()
            record = {
                "registrationId": reg_id,
                "createdDateTimeUtc": old["createdDateTimeUtc"] if old else now,
                "assignedHub": hub,
                "deviceId": device_id,
                "status": "assigned",
                "substatus": "initialAssignment",
                "etag": new_etag(),
                "lastUpdatedDateTimeUtc": now,
                "_enrollmentGroupId": group_id,
            }
            self._docs[REGISTRATIONS][reg_id.lower()] = record
            self._pager.invalidate()
            return models.public_view(record)

    def registration_raw(self, reg_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs[REGISTRATIONS].get(reg_id.lower())
            return dict(doc) if doc else None

    # ----- queries ----------------------------------------------------------------------------------
    def query(self, kind: str, page_size: int | None, token: str | None,
              group_id: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``kind`` (optionally the records of one group) and the next continuation token."""
        with self._lock:
            docs = self._docs[kind]
            keys = self._pager.keys(kind, group_id, lambda: self._select(kind, group_id))
            page, nxt = self._pager.page(keys, page_size, token)
            view = self._enrollment_view if kind == ENROLLMENTS else models.public_view
            return [view(docs[k]) for k in page if k in docs], nxt

    def _select(self, kind: str, group_id: str | None) -> Iterable[str]:
        if group_id is None:
            return self._docs[kind].keys()
        wanted = group_id.lower()
        docs = self._docs[kind].items()
        return (k for k, d in docs if (d.get("_enrollmentGroupId") or "").lower() == wanted)

    # ----- matching support (raw documents, certificates included) -----------------------------------
    def enrollment_raw(self, reg_id: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs[ENROLLMENTS].get(reg_id.lower())
            return dict(doc) if doc else None

    def groups_raw(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._docs[GROUPS].values()]

    # ----- device operations (polling) --------------------------------------------------------------
    def save_operation(self, operation_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            if len(self._operations) >= _MAX_OPERATIONS:
                self._operations.pop(next(iter(self._operations)))
            self._operations[operation_id] = body

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        with self._lock:
            body = self._operations.get(operation_id)
            if body is None:
                raise errors.not_found(errors.OPERATION_NOT_FOUND, "Operation not found.")
            return body

    # ----- bulk seeding and persistence (see emulator/dps/seed.py) ------------------------------------
    def seed_enrollments(self, items: list[dict[str, Any]]) -> int:
        from emulator.dps.seed import seed_enrollments  # late import: keeps the graph acyclic

        with self._lock:
            count = seed_enrollments(self._docs[ENROLLMENTS], self._docs[GROUPS], items)
            self._pager.invalidate()
            return count

    def seed_registrations(self, items: list[dict[str, Any]]) -> int:
        from emulator.dps.seed import seed_registrations

        with self._lock:
            count = seed_registrations(self._docs[REGISTRATIONS], items)
            self._pager.invalidate()
            return count

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(docs) for kind, docs in self._docs.items()}

    def clear(self) -> None:
        with self._lock:
            for docs in self._docs.values():
                docs.clear()
            self._operations.clear()
            self._pager.invalidate()

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the state (certificates and internal keys included)."""
        with self._lock:
            return {kind: [dict(d) for d in docs.values()] for kind, docs in self._docs.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DpsState:
        state = cls()
        for kind in (ENROLLMENTS, GROUPS, REGISTRATIONS):
            id_field = "enrollmentGroupId" if kind == GROUPS else "registrationId"
            state._docs[kind] = {d[id_field].lower(): dict(d) for d in data.get(kind, [])}
        return state


def _signers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    att = doc.get("attestation") or {}
    if att.get("type") != "x509":
        return []
    return list((att["x509"].get("signingCertificates") or {}).values())

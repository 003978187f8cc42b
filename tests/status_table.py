"""The shared status table as the tests state it: one HTTP status → the ``shared.errors`` type it must become.

Both boundaries translate through ``shared/adapters/http_status.py``, so the SDK tests
(tests/unit/test_sdk_errors.py) and the Storage tests (tests/unit/test_storage_errors.py) check one table.
"""

from __future__ import annotations

from shared.errors import AuthFailed, Conflict, NotFound, Permanent, PreconditionFailed, Throttled, Transient

STATUS_TABLE: list[tuple[int, type[Exception]]] = [
    (401, AuthFailed),
    (403, AuthFailed),
    (404, NotFound),
    (409, Conflict),
    (412, PreconditionFailed),
    (429, Throttled),
    (500, Transient),
    (503, Transient),
    (408, Transient),
    (400, Permanent),
    (501, Permanent),  # never heals: not worth a retry
    (413, Permanent),
]

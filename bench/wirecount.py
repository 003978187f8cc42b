"""Client-side count of HTTP requests by (method, path pattern, status), taken at urllib3's
``HTTPConnectionPool._make_request`` — one call per attempt, so retries made inside urllib3 (the SDKs retry
GET/PUT/DELETE after a 429's Retry-After there) are counted too.

Why not only the emulator's counters: they count identity-registry operations per *device* (a 100-device bulk
call adds 100), which is right for the throttle but not a count of round trips. This is a measurement hook in
the benchmark process only (no behaviour changes); the emulator counters are reported alongside.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from urllib3.connectionpool import HTTPConnectionPool

_ID_AFTER = re.compile(
    r"^/(devices|twins|registrations|enrollments|enrollmentGroups|jobs)/(?!query$|create$)[^/]+"
)
# blob storage of the import-job path: /<account>/<working container>[/<blob>] (blob names are per run)
_BLOB = re.compile(r"^/[^/]+/unprovision-import-[0-9a-f]+(?P<blob>/.+)?$")
BLOB_PREFIX = "/{account}/{container}"

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_installed = False


def pattern(method: str, url: str) -> str:
    """``GET /devices/{id}``-style operation name; the ID is never kept (it could be anything)."""
    path = urlsplit(url).path or "/"
    blob = _BLOB.match(path)
    if blob:
        return f"{method.upper()} {BLOB_PREFIX}{'/{blob}' if blob.group('blob') else ''}"
    path = _ID_AFTER.sub(lambda m: f"/{m.group(1)}/{{id}}", path)
    return f"{method.upper()} {path.rstrip('/') or '/'}"


def install() -> None:
    """Wrap ``_make_request`` once per process."""
    global _installed  # noqa: PLW0603 - one hook per process, by design
    if _installed:
        return
    original = HTTPConnectionPool._make_request

    def counted(self: HTTPConnectionPool, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = original(self, conn, method, url, *args, **kwargs)
        key = f"{pattern(method, url)} {response.status}"
        with _lock:
            _counts[key] += 1
        return response

    HTTPConnectionPool._make_request = counted  # type: ignore[method-assign]
    _installed = True


def snapshot() -> dict[str, int]:
    """``{"METHOD /pattern STATUS": n}`` so far."""
    with _lock:
        return dict(_counts)

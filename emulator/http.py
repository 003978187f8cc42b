"""Minimal HTTP plumbing shared by every emulated service (DPS, IoT Hub, admin).

Why not a web framework: the emulator must stay dependency-free and behave byte-for-byte as the SDKs expect
(status codes, headers, bodies), so each service gets a tiny ``Router`` and raises ``ServiceError`` for
failures; the server (``emulator.server``) turns both into wire responses and applies
the realism knobs around dispatch.

Handler contract: ``handler(request: Request, **path_params) -> Response``. Path parameters are URL-decoded.
A handler may also return a bare JSON-serialisable value, which is wrapped as ``Response(200, value)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

Handler = Callable[..., Any]


class ServiceError(Exception):
    """A failure that maps to one HTTP error response.

    ``code`` is the service's error code (DPS six-digit int, IoT Hub name or number); ``body`` overrides the
    default error body that the owning service's ``error_body(err)`` would format.
    """

    def __init__(
        self,
        status: int,
        code: int | str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body


class CaseInsensitiveDict(Mapping[str, str]):
    """Read-only header mapping with case-insensitive lookup (HTTP header names are case-insensitive)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, tuple[str, str]] = {}
        for key, value in (items or {}).items():
            self._data[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._data.values())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def __repr__(self) -> str:
        return f"CaseInsensitiveDict({dict(self.items())!r})"


def _is_json_content_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@dataclass
class Request:
    """One inbound request, relative to the service root (path without the query string)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    client_cert_chain: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CaseInsensitiveDict):
            self.headers = CaseInsensitiveDict(self.headers)
        self.method = self.method.upper()

    def json(self) -> Any:
        """Parse the body as JSON; ``None`` for an empty body.

        A non-empty body must be declared JSON (415 otherwise — the DPS rule, applied to every service)
        and must parse (400 otherwise).
        """
        if not self.body:
            return None
        content_type = self.headers.get("content-type", "")
        if not _is_json_content_type(content_type):
            raise ServiceError(415, 415001, "Content-Type must be application/json.")
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ServiceError(400, 400004, f"Malformed JSON body: {exc}") from exc


@dataclass
class Response:
    """A service answer; ``body`` is JSON-serialisable (``None`` means no body)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    literal_segments: int
    order: int
    handler: Handler


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(pattern: str) -> tuple[re.Pattern[str], int]:
    """Turn ``/a/{b}/c`` into an anchored regex; each parameter matches one non-empty path segment."""
    parts: list[str] = []
    position = 0
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    literal = sum(1 for seg in pattern.strip("/").split("/") if seg and not _PARAM.search(seg))
    return re.compile("^" + "".join(parts) + "/?$"), literal


class Router:
    """Method + path-pattern dispatch.

    Literal segments beat parameters (``/devices/query`` over ``/devices/{id}``).
    """

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator registering ``handler(request, **params)`` for ``method`` and ``pattern``."""

        def register(handler: Handler) -> Handler:
            regex, literal = _compile(pattern)
            self._routes.append(_Route(method.upper(), pattern, regex, literal, len(self._routes), handler))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str], str]:
        """Return (handler, params, pattern) for a request; ServiceError 404/405 when nothing fits."""
        candidates: list[tuple[_Route, dict[str, str]]] = []
        for route in self._routes:
            found = route.regex.match(path)
            if found:
                candidates.append((route, {k: unquote(v) for k, v in found.groupdict().items()}))
        if not candidates:
            raise ServiceError(404, 404000, f"No resource at {path}.")
        allowed = [c for c in candidates if c[0].method == method.upper()]
        if not allowed:
            methods = ", ".join(sorted({c[0].method for c in candidates}))
            raise ServiceError(405, 405000, f"Method {method} not allowed.", headers={"Allow": methods})
        route, params = min(allowed, key=lambda c: (-c[0].literal_segments, c[0].order))
        return route.handler, params, route.pattern

    def dispatch(self, request: Request) -> Response:
        """Run the matching handler; bare return values become 200 responses."""
        handler, params, _ = self.match(request.method, request.path)
        result = handler(request, **params)
        if isinstance(result, Response):
            return result
        return Response(200, result)


class Service(Protocol):
    """What the server needs from each emulated service (DPS, one per hub, admin)."""

    name: str
    router: Router

    def authorize(self, request: Request) -> None:
        """Raise ServiceError (401) unless the request carries valid credentials."""

    def error_body(self, err: ServiceError) -> Any:
        """Format the service-specific JSON error body for ``err`` (used when ``err.body`` is None)."""

"""HTTP front end for HTTP functions: ``http://127.0.0.1:<port>/<routePrefix>/<route>``
(docs/azure-behaviour.md §F4).

Route templates ``{x}``, ``{x:int}``, ``{x?}``, ``{*x}`` (ASP.NET Core style; case-insensitive literals), a
method filter, function keys (header ``x-functions-key`` wins over query ``code``), 204 when the function
returns None, 500 with an empty body when it raises. Also ``POST /admin/functions/<name>`` with the master
key, as the host offers, to run a non-HTTP function now (202).

Not pinned by a documented source: a request whose path matches but whose method is not allowed gets 404 (the
host registers routes with method constraints, so nothing matches); constraints other than
int/long/bool/alpha/guid/ double are accepted but not enforced.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.app_index import FunctionInfo, HttpSpec, InvocationResult
from devhost.keys import KeyStore

log = logging.getLogger("devhost.http")

KEY_HEADER = "x-functions-key"
_PARAM = re.compile(r"\{(\*?)([A-Za-z_][\w-]*)(?::([^}?]+))?(\?)?\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
}

Invoker = Callable[[FunctionInfo, Any], InvocationResult]
ResultHandler = Callable[[FunctionInfo, InvocationResult], None]
AdminRunner = Callable[[str, str], bool]


@dataclass(frozen=True)
class CompiledRoute:
    """A route template turned into a regex; ``names`` maps regex groups back to route parameter names."""

    template: str
    pattern: re.Pattern[str]
    names: dict[str, str]
    rank: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        if not found:
            return None
        return {self.names[g]: unquote(v) for g, v in found.groupdict().items() if v is not None}


def compile_route(template: str) -> CompiledRoute:
    """Compile an ASP.NET Core style template (without the route prefix) into a matcher of ``/a/b`` paths."""
    names: dict[str, str] = {}
    parts: list[str] = []
    rank: list[int] = []
    for segment in [s for s in template.strip("/").split("/") if s]:
        whole = _PARAM.fullmatch(segment)
        if whole and (whole.group(1) or whole.group(4)):
            group = f"g{len(names)}"
            names[group] = whole.group(2)
            inner = ".*" if whole.group(1) else _CONSTRAINTS.get(whole.group(3) or "", "[^/]+")
            parts.append(f"(?:/(?P<{group}>{inner}))?")
            rank.append(4 if whole.group(1) else 3)
            continue
        pieces, pos, seg_rank = [], 0, 0
        for param in _PARAM.finditer(segment):
            pieces.append(re.escape(segment[pos : param.start()]))
            group = f"g{len(names)}"
            names[group] = param.group(2)
            inner = _CONSTRAINTS.get(param.group(3) or "", "[^/]+?")
            pieces.append(f"(?P<{group}>{inner})")
            seg_rank = max(seg_rank, 1 if param.group(3) in _CONSTRAINTS else 2)
            pos = param.end()
        pieces.append(re.escape(segment[pos:]))
        parts.append("/" + "".join(pieces))
        rank.append(seg_rank)
    pattern = re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)
    return CompiledRoute(template, pattern, names, tuple(rank))


@dataclass(frozen=True)
class _Endpoint:
    info: FunctionInfo
    spec: HttpSpec
    route: CompiledRoute


class HttpFrontEnd:
    """ThreadingHTTPServer on 127.0.0.1 serving the app's HTTP functions; ``port`` 0 picks a free port."""

    def __init__(
        self,
        functions: list[FunctionInfo],
        keys: KeyStore,
        invoker: Invoker,
        *,
        route_prefix: str = "api",
        host: str = "127.0.0.1",
        port: int = 7071,
        on_result: ResultHandler | None = None,
        admin_runner: AdminRunner | None = None,
    ) -> None:
        endpoints = [
            _Endpoint(f, f.spec, compile_route(f.spec.route))
            for f in functions
            if isinstance(f.spec, HttpSpec)
        ]
        self.endpoints = sorted(endpoints, key=lambda e: e.route.rank)
        self.keys = keys
        self.prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self.invoker = invoker
        self.on_result = on_result
        self.admin_runner = admin_runner
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="devhost-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def find(self, method: str, path: str) -> tuple[_Endpoint, dict[str, str]] | None:
        """The endpoint for ``path`` (below the prefix) that allows ``method``, with its route values."""
        for endpoint in self.endpoints:
            values = endpoint.route.match(path)
            if values is None:
                continue
            if endpoint.spec.methods is None or method.upper() in endpoint.spec.methods:
                return endpoint, values
        return None


def _presented_key(headers: Any, query: dict[str, str]) -> str | None:
    return headers.get(KEY_HEADER) or query.get("code")


def _handler_for(front: HttpFrontEnd) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "devhost"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            # The request line may carry ?code=<key>; log method and path only.
            log.debug("%s %s", self.command, urlsplit(self.path).path)

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if url.path.lower().startswith("/admin/functions/"):
                self._admin(url.path.split("/")[-1], query, body)
                return
            if front.prefix and not url.path.lower().startswith(front.prefix.lower()):
                self._reply(404)
                return
            found = front.find(self.command, url.path[len(front.prefix) :] or "/")
            if found is None:
                self._reply(404)
                return
            endpoint, route_values = found
            if not front.keys.authorizes(endpoint.spec.auth_level, _presented_key(self.headers, query)):
                self._reply(401)
                return
            request = func.HttpRequest(
                self.command,
                f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}",
                headers=dict(self.headers.items()),
                params=query,
                route_params=route_values,
                body=body,
            )
            self._respond(endpoint.info, request)

        def _respond(self, info: FunctionInfo, request: func.HttpRequest) -> None:
            try:
                result = front.invoker(info, request)
                if front.on_result:
                    front.on_result(info, result)
            except Exception:
                log.exception("HTTP function %s failed", info.name)
                self._reply(500)
                return
            self._write_response(info, result.return_value)

        def _write_response(self, info: FunctionInfo, value: Any) -> None:
            if value is None:
                self._reply(204)
                return
            if isinstance(value, str | bytes):
                value = func.HttpResponse(value)
            if not isinstance(value, func.HttpResponse):
                log.error(
                    "HTTP function %s returned %s, not an HttpResponse", info.name, type(value).__name__
                )
                self._reply(500)
                return
            headers = {k: v for k, v in value.headers.items() if k.lower() != "content-length"}
            if "content-type" not in {k.lower() for k in headers} and value.mimetype:
                headers["Content-Type"] = f"{value.mimetype}; charset={value.charset}"
            self._reply(value.status_code, value.get_body() or b"", headers)

        def _admin(self, name: str, query: dict[str, str], body: bytes) -> None:
            """``POST /admin/functions/<name>`` ``{"input": "..."}`` with the master key runs it now."""
            if self.command != "POST" or front.admin_runner is None:
                self._reply(404)
                return
            if not front.keys.authorizes("admin", _presented_key(self.headers, query)):
                self._reply(401)
                return
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                self._reply(400)
                return
            text = str(payload.get("input", "")) if isinstance(payload, dict) else ""
            self._reply(202 if front.admin_runner(name, text) else 404)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch  # noqa: N815

    return Handler

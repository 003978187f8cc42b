"""HTTPS listener and the dispatch pipeline every service call goes through.

Pipeline per request: route match (404/405) → ``authorize`` (401) → knobs (faults, throttle) →
latency → handler → counters → JSON encoding. Every JSON body is sent with
``Content-Type: application/json; charset=utf-8``; 204 and ``None`` bodies have no body. HTTP/1.1
keep-alive is supported because both SDKs reuse ``requests`` sessions.

TLS: pyOpenSSL (``emulator.tls``); every connection is asked for a client certificate and any chain is
accepted at the handshake; the chain (leaf first) reaches the services as ``Request.client_cert_chain``.
The ``x-emulator-client-cert`` header is a fallback used only when the handshake carried no certificate.

Latency: accepted sockets get ``TCP_NODELAY`` and each response leaves in one write (headers and body
buffered, then flushed once). Without both, the body's small second segment waited for the client's
delayed ACK (Nagle), which made every call ~50 ms instead of a few.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from OpenSSL import SSL

from emulator.http import Request, Response, Service, ServiceError
from emulator.knobs import Decision, Knobs
from emulator.tls import TlsSocket

log = logging.getLogger("emulator")
CLIENT_CERT_HEADER = "x-emulator-client-cert"
JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class WireResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _pems_from_header(value: str | None) -> tuple[str, ...]:
    """Decode the documented stand-in header (base64 of a PEM chain, leaf first) into single PEMs."""
    if not value:
        return ()
    try:
        text = base64.b64decode(value, validate=False).decode("ascii")
    except (binascii.Error, ValueError):
        return ()
    end = "-----END CERTIFICATE-----"
    begin = "-----BEGIN"
    return tuple(part[part.find(begin):] + end + "\n" for part in text.split(end) if begin in part)


def _default_classify(service: Service, request: Request) -> tuple[str, float]:
    """DPS (or any service without ``classify``): device registration vs service API budgets."""
    if "/registrations/" in request.path and not request.path.startswith("/registrations/"):
        return "dpsRegistration", 1
    return "dpsService", 1


@dataclass
class Dispatcher:
    """Runs the pipeline for one service. ``admin`` (optional) serves paths under ``/_emulator``."""

    service: Service
    knobs: Knobs
    admin: Service | None = None
    on_mutation: Callable[[], None] = lambda: None
    sleep: Callable[[float], None] = time.sleep
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request, client_ip: str) -> WireResponse | None:
        """Answer one request; None tells the listener to drop the connection (fault ``rateDrop``)."""
        if self.admin is not None and (request.path + "/").startswith("/_emulator/"):
            return self._admin(request, client_ip)
        service = self.service
        operation, units = f"{request.method} {request.path}", 1.0
        try:
            _, _, pattern = service.router.match(request.method, request.path)
            operation = f"{request.method} {pattern}"
            service.authorize(request)
            classify = getattr(service, "classify", None)
            bucket, units = classify(request) if classify else _default_classify(service, request)
            decision = self.knobs.decide(service.name, request.method, request.path, bucket, units)
            if decision is not None and decision.kind == "drop":
                self.knobs.count(service.name, operation, 0, units)
                return None
            if delay := self.knobs.delay():
                self.sleep(delay)
            response = self._run(service, request, decision)
        except ServiceError as err:
            response = self._error(service, err)
        except Exception:
            log.exception("unhandled error in %s %s", service.name, operation)
            response = self._error(service, ServiceError(500, 500001, "Internal emulator error."))
        self.knobs.count(service.name, operation, response.status, units)
        if request.method != "GET" and response.status < 400:
            self.on_mutation()
        return encode(response, request.method)

    def _admin(self, request: Request, client_ip: str) -> WireResponse:
        admin = self.admin
        assert admin is not None  # noqa: S101 - checked by the caller
        headers = {**dict(request.headers), "x-emulator-client-ip": client_ip}
        inner = Request(request.method, request.path[len("/_emulator"):] or "/", request.query, headers,
                        request.body, request.client_cert_chain)
        try:
            admin.authorize(inner)
            response = admin.router.dispatch(inner)
        except ServiceError as err:
            response = self._error(admin, err)
        except Exception:
            log.exception("unhandled error in admin %s %s", request.method, request.path)
            response = self._error(admin, ServiceError(500, "InternalError", "Internal emulator error."))
        return encode(response, request.method)

    @staticmethod
    def _run(service: Service, request: Request, decision: Decision | None) -> Response:
        if decision is not None:
            raise _decision_error(decision.status, decision.retry_after, decision.kind)
        return service.router.dispatch(request)

    @staticmethod
    def _error(service: Service, err: ServiceError) -> Response:
        body = err.body if err.body is not None else service.error_body(err)
        headers = dict(err.headers)
        extra = getattr(service, "error_headers", None)
        if extra is not None:
            headers = {**extra(err), **headers}
        return Response(err.status, body, headers)


def _decision_error(status: int, retry_after: int | None, kind: str) -> ServiceError:
    if status == 429:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        message = "Throttled: the budget for this operation is exhausted." if kind == "throttle" \
            else "Injected fault: throttled."
        return ServiceError(429, 429001, message, headers=headers)
    code = 503001 if status == 503 else status * 1000 + 1
    return ServiceError(status, code, f"Injected fault: {status}.")


def encode(response: Response, method: str) -> WireResponse:
    """Serialise a Response: JSON body with charset; no body for 204, ``None`` or HEAD."""
    if method == "HEAD":
        return WireResponse(response.status, dict(response.headers), b"")
    headers = dict(response.headers)
    if response.body is None or response.status == 204:
        return WireResponse(response.status, headers, b"")
    headers["Content-Type"] = JSON_TYPE
    return WireResponse(response.status, headers, json.dumps(response.body).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TlsHttpServer
    timeout = 60
    wbufsize = 64 * 1024  # buffered: a response's headers and body go out together on ``flush``

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        chain = (getattr(self.connection, "client_chain", ())
                 or _pems_from_header(headers.get(CLIENT_CERT_HEADER)))
        request = Request(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                          headers, body, chain)
        answer = self.server.dispatcher.handle(request, self.client_address[0])
        if answer is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _serve  # noqa: N815


class TlsHttpServer(ThreadingHTTPServer):
    """A threading HTTPS server; the TLS handshake runs in the per-connection thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher,
                 context: SSL.Context | None) -> None:
        self.dispatcher = dispatcher
        self.context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        sock.setblocking(True)
        with contextlib.suppress(OSError):  # not fatal: only latency depends on it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is None:
            sock.close()
            raise OSError("TLS context not set yet")
        return TlsSocket(self.context, sock), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)
            request.do_handshake()
            request.settimeout(None)
        except (OSError, SSL.Error):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            (self._open.add if add else self._open.discard)(conn)

    def close_all(self) -> None:
        """Stop serving and cut keep-alive connections, so clients cannot talk to a stopped emulator."""
        self.shutdown()
        self.server_close()
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

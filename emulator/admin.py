"""Admin API under ``/_emulator`` on the DPS port: reset, state dump, seeding, knobs, counters.

Authorisation choice: loopback only (the client's socket address must be a loopback address), no token.
The emulator binds 127.0.0.1 by default, so this is the simplest rule that keeps the API away from other
hosts while letting scripts and tests call it with plain ``requests``. Non-loopback callers get 403.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from emulator.http import Request, Response, Router, ServiceError
from emulator.knobs import Knobs


class Emulator(Protocol):
    """What the admin API drives (``emulator.server.Emulator``); a protocol, so admin does not import the
    server that mounts it."""

    config: dict[str, Any]
    knobs: Knobs

    def reset(self) -> None: ...

    def dump(self) -> dict[str, Any]: ...

    def seed(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def update_knobs(self, data: dict[str, Any]) -> None: ...

    def save(self) -> str | None: ...

    def registration_flow(self, data: dict[str, Any] | None = None) -> dict[str, Any]: ...

KNOB_KEYS = {
    "latency": ("latencyMs", "jitterMs"),
    "throttle": ("tier", "units", "dpsThrottle", "timeCompression"),
    "jobs": ("jobDevicesPerSecond", "jobStartSeconds", "timeCompression"),
    "knobs": ("latencyMs", "jitterMs", "tier", "units", "dpsThrottle", "timeCompression", "faults",
              "jobDevicesPerSecond", "jobStartSeconds"),
}


def _body(request: Request) -> dict[str, Any]:
    data = request.json()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServiceError(400, "BadRequest", "Expected a JSON object.")
    return data


def _pick(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(data) - set(keys)
    if unknown:
        raise ServiceError(400, "BadRequest", f"Unknown settings: {sorted(unknown)}; allowed: {list(keys)}.")
    return data


def build_router(emulator: Emulator) -> Router:
    """Admin routes; paths are relative to ``/_emulator``."""
    router = Router()

    @router.route("GET", "/")
    def config(request: Request) -> Response:
        return Response(200, emulator.config)

    @router.route("POST", "/reset")
    def reset(request: Request) -> Response:
        emulator.reset()
        return Response(200, {"reset": True})

    @router.route("GET", "/state")
    def state(request: Request) -> Response:
        return Response(200, emulator.dump())

    @router.route("POST", "/seed")
    def seed(request: Request) -> Response:
        return Response(200, emulator.seed(_body(request)))

    @router.route("GET", "/faults")
    def get_faults(request: Request) -> Response:
        return Response(200, emulator.knobs.settings()["faults"])

    @router.route("PUT", "/faults")
    def put_faults(request: Request) -> Response:
        emulator.update_knobs({"faults": _body(request)})
        return Response(200, emulator.knobs.settings()["faults"])

    for name, keys in KNOB_KEYS.items():
        _knob_routes(router, emulator, name, keys)

    @router.route("GET", "/registration")
    def get_registration_flow(request: Request) -> Response:
        return Response(200, emulator.registration_flow())

    @router.route("PUT", "/registration")
    def put_registration_flow(request: Request) -> Response:
        return Response(200, emulator.registration_flow(_body(request)))

    @router.route("GET", "/counters")
    def counters(request: Request) -> Response:
        return Response(200, emulator.knobs.counters())

    @router.route("POST", "/save")
    def save(request: Request) -> Response:
        return Response(200, {"saved": emulator.save()})

    return router


def _knob_routes(router: Router, emulator: Emulator, name: str, keys: tuple[str, ...]) -> None:
    @router.route("GET", f"/{name}")
    def get_knobs(request: Request) -> Response:
        return Response(200, emulator.knobs.settings())

    @router.route("PUT", f"/{name}")
    def put_knobs(request: Request) -> Response:
        emulator.update_knobs(_pick(_body(request), keys))
        return Response(200, emulator.knobs.settings())


class AdminService:
    """The admin API as a mountable service (see ``emulator.wire.Dispatcher``)."""

    name = "admin"

    def __init__(self, emulator: Emulator) -> None:
        self.router = build_router(emulator)

    def authorize(self, request: Request) -> None:
        """Loopback callers only; the dispatcher supplies the socket address in ``x-emulator-client-ip``."""
        try:
            loopback = ipaddress.ip_address(request.headers.get("x-emulator-client-ip", "")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ServiceError(403, "Forbidden", "The admin API is available from loopback addresses only.")

    def error_body(self, err: ServiceError) -> Any:
        return {"error": {"code": err.code, "message": err.message}}

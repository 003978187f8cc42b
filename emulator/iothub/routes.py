"""IoT Hub service: registry routes as azure-iot-hub 2.7.0 calls them (api-version 2021-04-12).

Thin handlers over ``HubState``; status codes exactly as the SDK accepts them (docs/azure-behaviour.md §4.2):
PUT/GET/POST 200, DELETE 204, bulk 200 or 400. Errors use the classic body
``{"Message": "ErrorCode:<Name>;<detail>", "ExceptionMessage": "Tracking ID:..."}`` plus the
``iothub-errorcode`` header (docs/azure-behaviour.md §4.5). Import/export jobs: see ``emulator.iothub.jobs``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from emulator import sas
from emulator.http import Request, Response, Router, ServiceError
from emulator.iothub import bulk, device_api, query
from emulator.iothub.jobs import JobClock, JobRunner
from emulator.iothub.model import hub_error
from emulator.iothub.state import HubState

_STATUS_NAMES = {400: "ArgumentInvalid", 401: "IotHubUnauthorizedAccess", 404: "NotFound",
                 405: "MethodNotAllowed", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType",
                 429: "ThrottlingException", 500: "ServerError", 503: "ServiceUnavailable"}


def error_name(err: ServiceError) -> str:
    """The hub error name for an error raised anywhere (named codes kept, numbers mapped by status)."""
    if isinstance(err.code, str) and not err.code.isdigit():
        return err.code
    return _STATUS_NAMES.get(err.status, "ServerError")


def _if_match(request: Request) -> str | None:
    return request.headers.get("if-match")


def _top(request: Request) -> int | None:
    raw = request.query.get("top")
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError as exc:
        raise hub_error(400, "ArgumentInvalid", "top must be an integer.") from exc


def build_router(state: HubState, jobs: JobRunner) -> Router:
    """All hub routes: registry, twins, query, statistics, jobs, and the device-to-cloud endpoint."""
    router = Router()
    _job_routes(router, jobs)

    @router.route("GET", "/devices")
    def list_devices(request: Request) -> Response:
        return Response(200, state.list_devices(_top(request)))

    @router.route("POST", "/devices")
    def bulk_devices(request: Request) -> Response:
        return bulk.bulk_update(state, request.json())

    @router.route("PUT", "/devices/{device_id}")
    def put_device(request: Request, device_id: str) -> Response:
        return Response(200, state.create_or_update(device_id, request.json() or {}, _if_match(request)))

    @router.route("GET", "/devices/{device_id}")
    def get_device(request: Request, device_id: str) -> Response:
        return Response(200, state.get_device(device_id))

    @router.route("DELETE", "/devices/{device_id}")
    def delete_device(request: Request, device_id: str) -> Response:
        state.delete_device(device_id, _if_match(request))
        return Response(204)

    @router.route("POST", "/devices/query")
    def query_devices(request: Request) -> Response:
        spec = request.json() or {}
        text = spec.get("query") if isinstance(spec, dict) else None
        items, token = query.run_query(
            state, text, max_items=request.headers.get("x-ms-max-item-count"),
            continuation=request.headers.get("x-ms-continuation"))
        headers = {"x-ms-item-type": "twin"}
        if token:
            headers["x-ms-continuation"] = token
        return Response(200, items, headers)

    @router.route("GET", "/twins/{device_id}")
    def get_twin(request: Request, device_id: str) -> Response:
        return Response(200, state.get_twin(device_id))

    @router.route("PUT", "/twins/{device_id}")
    def replace_twin(request: Request, device_id: str) -> Response:
        return Response(200, state.update_twin(device_id, request.json(), _if_match(request), replace=True))

    @router.route("PATCH", "/twins/{device_id}")
    def patch_twin(request: Request, device_id: str) -> Response:
        return Response(200, state.update_twin(device_id, request.json(), _if_match(request), replace=False))

    @router.route("GET", "/statistics/devices")
    def device_statistics(request: Request) -> Response:
        return Response(200, state.statistics())

    @router.route("GET", "/statistics/service")
    def service_statistics(request: Request) -> Response:
        return Response(200, {"connectedDeviceCount": 0})

    device_api.register_routes(router, state)
    return router


def _job_routes(router: Router, jobs: JobRunner) -> None:
    @router.route("POST", "/jobs/create")
    def create_job(request: Request) -> Response:
        return Response(200, jobs.create(request.json()))

    @router.route("GET", "/jobs")
    def list_jobs(request: Request) -> Response:
        return Response(200, jobs.list())

    @router.route("GET", "/jobs/{job_id}")
    def get_job(request: Request, job_id: str) -> Response:
        return Response(200, jobs.get(job_id))

    @router.route("DELETE", "/jobs/{job_id}")
    def cancel_job(request: Request, job_id: str) -> Response:
        return Response(200, jobs.cancel(job_id))


_BUCKETS = {"/devices/query": "query", "/twins": "twin", "/jobs": "jobs", "/statistics": "registry"}


class HubService:
    """One emulated hub as the server mounts it: router, SAS check, error formatting, throttle buckets."""

    def __init__(self, state: HubState, policy_keys: Mapping[str, str], clock: JobClock) -> None:
        self.state = state
        self.name = state.name
        self.policy_keys = dict(policy_keys)
        self.jobs = JobRunner(state, clock)
        state.reset_hooks.append(self.jobs.reset)
        self.router = build_router(state, self.jobs)

    def authorize(self, request: Request) -> None:
        """Service routes need a policy SAS scoped to the host the client dialled; device routes are
        authenticated per device inside the handler."""
        if device_api.is_device_path(request.path):
            return
        try:
            sas.verify(request.headers.get("authorization"), resource=request.headers.get("host", ""),
                       keys_for=sas.policy_keys(self.policy_keys))
        except sas.SasError as exc:
            raise hub_error(401, "IotHubUnauthorizedAccess", "Unauthorized") from exc

    def error_body(self, err: ServiceError) -> Any:
        stamp = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return {"Message": f"ErrorCode:{error_name(err)};{err.message}",
                "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}"}

    def error_headers(self, err: ServiceError) -> dict[str, str]:
        return {"iothub-errorcode": error_name(err)}

    def classify(self, request: Request) -> tuple[str, float]:
        """Throttle bucket and cost: registry ops cost one unit per device (bulk = its length)."""
        path = request.path
        if device_api.is_device_path(path):
            return "d2c", 1
        for prefix, bucket in _BUCKETS.items():
            if path.startswith(prefix):
                if bucket == "twin":
                    return ("twinRead" if request.method == "GET" else "twinUpdate"), 1
                return bucket, 1
        if request.method == "POST" and path.rstrip("/") == "/devices":
            return "registry", float(max(_bulk_length(request), 1))
        return "registry", 1


def _bulk_length(request: Request) -> int:
    try:
        body = request.json()
    except ServiceError:
        return 1
    return len(body) if isinstance(body, list) else 1

"""DPS service API routes, exactly as provisioningserviceclient 1.2.0 calls them
(docs/azure-behaviour.md §3.2).

Every service route checks ``api-version`` (``2018-09-01-preview`` as the SDK sends, or ``2021-10-01``;
anything else → 400) and, for 2021-10-01, adds the ``x-ms-error-code`` header to errors. DELETE answers
exactly 204. Query strings in ``{"query": ...}`` are accepted and ignored: every query returns everything
(the grammar is undocumented, §3.5).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from emulator.dps import errors
from emulator.dps.device import DeviceEndpoint
from emulator.dps.state import ENROLLMENTS, GROUPS, REGISTRATIONS, DpsState
from emulator.http import Request, Response, Router, ServiceError

API_VERSIONS = ("2018-09-01-preview", "2021-10-01")
MAX_BULK = 10
_ITEM_TYPES = {ENROLLMENTS: "Enrollment", GROUPS: "EnrollmentGroup", REGISTRATIONS: "DeviceRegistration"}


def _service_call(handler: Callable[..., Response]) -> Callable[..., Response]:
    """api-version check and the 2021-10-01 error header around one handler."""

    @functools.wraps(handler)
    def wrapped(request: Request, **params: str) -> Response:
        version = request.query.get("api-version")
        try:
            _check_version(version)
            return handler(request, **params)
        except ServiceError as err:
            if version == "2021-10-01":
                err.headers.setdefault("x-ms-error-code", str(err.code))
            raise

    return wrapped


def _check_version(version: str | None) -> None:
    if version not in API_VERSIONS:
        raise ServiceError(400, errors.API_VERSION_INVALID, f"Unsupported api-version {version!r}.")


def _if_match(request: Request) -> str | None:
    return request.headers.get("if-match") or None


def _page_size(request: Request) -> int | None:
    raw = request.headers.get("x-ms-max-item-count")
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.bad_request("x-ms-max-item-count must be an integer.") from exc


def _query(state: DpsState, kind: str, request: Request, group_id: str | None = None) -> Response:
    body = request.json()
    if kind != REGISTRATIONS and not (isinstance(body, dict) and isinstance(body.get("query"), str)):
        raise errors.bad_request('The query body must be {"query": "<string>"}.')
    size = _page_size(request)
    items, token = state.query(kind, size, request.headers.get("x-ms-continuation"), group_id)
    headers = {"x-ms-item-type": _ITEM_TYPES[kind]}
    if size is not None:
        headers["x-ms-max-item-count"] = str(size)
    if token is not None:
        headers["x-ms-continuation"] = token
    return Response(200, items, headers)


def _bulk(state: DpsState, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict) or not isinstance(body.get("enrollments"), list):
        raise errors.bad_request('The bulk body must be {"enrollments": [...], "mode": "..."}.')
    items = body["enrollments"]
    if not items or len(items) > MAX_BULK:
        raise errors.bad_request(f"A bulk operation takes 1 to {MAX_BULK} enrollments.")
    if body.get("mode") not in ("create", "update", "updateIfMatchETag", "delete"):
        raise errors.bad_request(f"Unknown bulk mode {body.get('mode')!r}.")
    return Response(200, state.bulk(body["mode"], items))


def build_router(state: DpsState, device: DeviceEndpoint) -> Router:
    """All DPS routes (service API + device API) on one router."""
    router = Router()
    add = router.route

    def service(method: str, pattern: str) -> Callable[[Callable[..., Response]], Any]:
        return lambda handler: add(method, pattern)(_service_call(handler))

    for kind, base, param in ((ENROLLMENTS, "/enrollments", "registration_id"),
                              (GROUPS, "/enrollmentGroups", "group_id")):
        put = state.put_enrollment if kind == ENROLLMENTS else state.put_group
        get = state.get_enrollment if kind == ENROLLMENTS else state.get_group
        delete = state.delete_enrollment if kind == ENROLLMENTS else state.delete_group
        attest = state.enrollment_attestation if kind == ENROLLMENTS else state.group_attestation
        item = f"{base}/{{{param}}}"
        service("PUT", item)(lambda r, _f=put, **p: Response(200, _f(_one(p), r.json(), _if_match(r))))
        service("GET", item)(lambda r, _f=get, **p: Response(200, _f(_one(p))))
        service("DELETE", item)(lambda r, _f=delete, **p: _deleted(lambda: _f(_one(p), _if_match(r))))
        service("POST", f"{item}/attestationmechanism")(lambda r, _f=attest, **p: Response(200, _f(_one(p))))
        service("POST", f"{base}/query")(lambda r, _k=kind: _query(state, _k, r))

    service("POST", "/enrollments")(lambda r: _bulk(state, r))
    service("GET", "/registrations/{registration_id}")(
        lambda r, registration_id: Response(200, state.get_registration(registration_id)))
    def delete_registration(request: Request, registration_id: str) -> Response:
        state.delete_registration(registration_id, _if_match(request))
        return Response(204)

    service("DELETE", "/registrations/{registration_id}")(delete_registration)
    service("POST", "/registrations/{group_id}/query")(
        lambda r, group_id: _query(state, REGISTRATIONS, r, group_id))
    add("PUT", "/{id_scope}/registrations/{registration_id}/register")(device.register)
    add("GET", "/{id_scope}/registrations/{registration_id}/operations/{operation_id}")(device.operation)
    add("POST", "/{id_scope}/registrations/{registration_id}")(device.status_lookup)
    return router


def _one(params: dict[str, str]) -> str:
    return next(iter(params.values()))


def _deleted(action: Callable[[], None]) -> Response:
    """Run a delete; the SDK accepts exactly 204 with no body."""
    action()
    return Response(204)

"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis 4.32.5, pip-installed into the venv; it is
not in requirements-dev.txt, so that test is skipped where it is missing; the body fuzz below always runs).

The app runs under the local host as a process; the document is the one it serves (``GET /api/openapi.json``,
event schema embedded). schemathesis generates valid and invalid requests per operation and checks: no 5xx
(with no faults injected, 502/503 would also be a bug), status codes and response bodies as documented.
A second test posts hypothesis-made bodies (near-valid and garbage) and checks every 400 names each field and
its reason, and that the host stays up.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings

from tests.soak.hostproc import FUNCTION_KEY, MASTER_KEY, HostProcess
from tests.soak.strategies import any_body

AUTH = {"x-functions-key": FUNCTION_KEY}
ADMIN_ROUTES = {"/unprovision/force": {"x-functions-key": MASTER_KEY}}  # the rest take the function key


@pytest.fixture
def running_host(host_process: HostProcess) -> HostProcess:
    return host_process.start()


def _checks(schemathesis: Any) -> list[Any]:
    checks = schemathesis.checks
    return [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
            checks.response_schema_conformance]


def _operations(schemathesis: Any, host: HostProcess) -> list[Any]:
    document = requests.get(host.base_url + "/openapi.json", timeout=30).json()
    return [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]


@pytest.mark.soak
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_documented_route_answers_as_documented_and_never_5xx(
    mode: str, running_host: HostProcess,
) -> None:
    """schemathesis' pytest integration (``from_fixture``) fails on pytest 9 (it reads the removed
    ``Function._nodeid``), so each operation's strategy is driven by hypothesis directly."""
    schemathesis = pytest.importorskip("schemathesis")
    operations = _operations(schemathesis, running_host)
    origin = running_host.base_url  # the document's server is the relative "/api": give it in full
    assert {op.path for op in operations} >= {"/unprovision", "/unprovision/force", "/unprovision/{eventId}"}
    for operation in operations:
        if mode == "negative" and operation.path in {"/audit", "/openapi.json"}:
            continue  # no input / one optional flag: nothing invalid to generate (hypothesis: Unsatisfiable)

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        def call(case: Any) -> None:
            headers = ADMIN_ROUTES.get(case.operation.path, AUTH)
            response = case.call(base_url=origin, headers=headers, timeout=60)
            case.validate_response(response, checks=_checks(schemathesis))

        call()
        assert running_host.alive(), operation.path


@pytest.mark.soak
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=any_body)
@example(body="[" * 10_000)  # json.loads recursion: was a 500
@example(body=b'{"eventId": "evt-\xff"}')  # invalid UTF-8: was accepted with U+FFFD
@example(body='{"note": "' + "\U0001F600" * 40_000 + '"}')  # more UTF-16 units than characters
def test_fuzzed_bodies_get_field_errors_never_5xx(running_host: HostProcess, body: str | bytes) -> None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    answer = requests.post(running_host.base_url + "/unprovision", data=raw, headers=AUTH, timeout=60)
    assert answer.status_code < 500, answer.text[:300]
    if answer.status_code == 400:
        document = answer.json()
        assert document["error"] == "invalid event"
        assert document["errors"], document
        for error in document["errors"]:
            assert error["field"]
            assert len(error["reason"]) >= 5, error
        assert document["rejectionId"]
    assert running_host.alive()

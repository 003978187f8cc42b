"""Fuzzing the queue message: near-valid and garbage bodies never crash the app, and every rejection says
which field is wrong and why, and is kept in the journal (nothing is silently dropped).

The first test drives only the contract (no I/O, many examples); the second drives the queue trigger's entry
point (``service.handle_event_body``) with the app's real adapters against the emulator and Azurite.
"""

from __future__ import annotations

import base64
import time

import pytest
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, example, given, settings

from shared.errors import Rejected
from shared.events import claimed_event_id, parse_event_body
from tests.soak.checks import host_loop_problems
from tests.soak.conftest import AppConfig
from tests.soak.hostproc import HostProcess
from tests.soak.settle import queue
from tests.soak.strategies import any_body
from unprovision.service import HandledOutcome, handle_event_body
from unprovision.wiring import Services

FINISHED = {"completed", "refused", "rejected", "failed"}
# Refusals the engine answers without claiming the eventId (a reused eventId with another body; force without
# the authority to force): journaled as rejections, never applied.
REFUSALS = {"conflict": "eventId", "forbidden": "force"}


def assert_clear_errors(errors: object) -> None:
    assert isinstance(errors, list | tuple)
    assert errors, "a rejection must list at least one field error"
    for error in errors:
        field = error.field if hasattr(error, "field") else error["field"]  # type: ignore[index]
        reason = error.reason if hasattr(error, "reason") else error["reason"]  # type: ignore[index]
        assert isinstance(field, str)
        assert field, f"field missing in {error!r}"
        assert isinstance(reason, str)
        assert len(reason) >= 5, f"reason missing in {error!r}"
        assert "Traceback" not in reason
        assert "pydantic" not in reason.lower(), reason


# Bodies that once crashed or fooled the parse (issue 11: recursion, U+FFFD, UTF-16 size, path segments).
HOSTILE = (
    "[" * 10_000, '{"a":' * 10_000, b'{"eventId": "e-\xff"}', '{"eventId": "\\ud800"}',
    '{"eventId": "a", "eventId": "b"}', '{"note": "' + "\U0001F600" * 40_000 + '"}', '{"eventId": ".."}',
)


@settings(max_examples=600, deadline=None)
@given(body=any_body)
@example(body=HOSTILE[0])
@example(body=HOSTILE[1])
@example(body=HOSTILE[2])
@example(body=HOSTILE[3])
@example(body=HOSTILE[4])
@example(body=HOSTILE[5])
@example(body=HOSTILE[6])
def test_contract_accepts_or_rejects_every_body_with_field_and_reason(body: str | bytes) -> None:
    try:
        event = parse_event_body(body)
    except Rejected as exc:
        assert_clear_errors(list(exc.errors))
        return
    assert event.event_id
    assert event.target, "an accepted event has a target"


@pytest.mark.soak
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=any_body)
def test_queue_entry_point_settles_every_fuzzed_body_and_keeps_rejections(
    app_services: Services, body: str | bytes,
) -> None:
    outcome = handle_event_body(body, app_services)  # with no faults injected nothing may be retried
    assert outcome.status in FINISHED | set(REFUSALS), outcome
    if outcome.status in REFUSALS:
        field = REFUSALS[str(outcome.status)]
        assert outcome.error, outcome
        assert outcome.error.startswith(f"{field}: "), outcome
        kept = [r for r in app_services.journal.iter_rejections(outcome.event_id)
                if any(e["field"] == field for e in r.errors)]
        assert kept, "a refused event is recorded as a rejection, not dropped"
        for record in kept:
            assert_clear_errors(list(record.errors))
        return
    if outcome.status != "rejected":
        return
    assert isinstance(outcome, HandledOutcome)
    assert outcome.http == 400
    assert outcome.code == "invalid_event"
    assert_clear_errors(list(outcome.errors))
    assert outcome.rejection_id, "a rejected body is recorded, not dropped"
    stored = app_services.journal.get_rejection(outcome.rejection_id)
    assert stored is not None
    assert [dict(e) for e in stored.errors] == [dict(e) for e in outcome.errors]
    claimed = claimed_event_id(body)
    if claimed is not None and stored.event_id is not None:
        assert stored.event_id == claimed


@pytest.mark.soak
def test_fuzzed_queue_messages_under_the_host_are_all_acknowledged_none_poisoned(
    app_config: AppConfig, app_services: Services, host_process: HostProcess,
) -> None:
    """Through the real queue trigger: every body (base64, as the host expects) is acknowledged: rejected
    with field errors or settled by the engine. A body that made the function raise five times would land in
    the poison queue: none may. The host loop logs no traceback and stays up."""
    lifecycle = queue(app_config.storage, app_config.lifecycle_queue)
    poison = queue(app_config.storage, app_config.lifecycle_queue + "-poison")
    sent: list[bytes] = []

    @settings(max_examples=60, deadline=None, database=None)
    @given(body=any_body)
    def send(body: str | bytes) -> None:
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        sent.append(raw)
        lifecycle.send_message(base64.b64encode(raw).decode())

    send()
    host_process.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _visible_or_hidden(lifecycle) > 0:
        time.sleep(1)
    assert _visible_or_hidden(lifecycle) == 0, "every message is acknowledged"
    assert poison.get_queue_properties().approximate_message_count == 0
    assert host_process.alive()
    host_process.stop()
    log = host_process.output()
    assert host_loop_problems(log, allow_retryable=False) == []
    rejections = list(app_services.journal.iter_rejections())
    assert rejections, f"{len(sent)} fuzzed bodies and not one rejected?"
    for record in rejections:
        assert_clear_errors(list(record.errors))


def _visible_or_hidden(client: QueueClient) -> int:
    """Messages still in the queue, invisible ones included (approximate count counts both)."""
    return int(client.get_queue_properties().approximate_message_count)

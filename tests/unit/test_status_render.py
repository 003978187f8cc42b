"""``status``'s text rendering: each step says what applied it or that it waits for a flush."""

from __future__ import annotations

from unprovision.commands.status import render
from unprovision.storm.coalesce import PENDING_AFTER


def document(*steps: dict[str, object]) -> dict[str, object]:
    return {"eventId": "ev-1", "status": "in_progress", "type": "stolen", "target": "dev-1",
            "source": "tracker", "updatedAt": "2026-12-06T00:00:00Z", "steps": list(steps)}


def test_a_step_waiting_in_its_hubs_set_says_a_flush_applies_it() -> None:
    text = render(document(
        {"index": 0, "kind": "EnrollmentDisabled", "target": "dev-1", "outcome": "done", "after": "disabled"},
        {"index": 1, "kind": "HubIdentityDisabled", "target": "dev-1", "hub": "hub-a", "outcome": "skipped",
         "after": PENDING_AFTER}))
    assert "  1. EnrollmentDisabled dev-1 -> done [disabled]\n" in text
    assert f"  2. HubIdentityDisabled dev-1 hub-a -> skipped [{PENDING_AFTER}]\n" in text


def test_a_flushed_step_names_its_job_and_a_failed_one_its_error() -> None:
    text = render(document(
        {"index": 1, "kind": "HubIdentityDisabled", "target": "dev-1", "hub": "hub-a", "outcome": "done",
         "after": "import job job-7"},
        {"index": 2, "kind": "HubIdentityDeleted", "target": "dev-2", "hub": "hub-a", "outcome": "failed",
         "error": "bulk call: IotHubUnauthorized"}))
    assert "  2. HubIdentityDisabled dev-1 hub-a -> done [import job job-7]\n" in text
    assert "  3. HubIdentityDeleted dev-2 hub-a -> failed (bulk call: IotHubUnauthorized)\n" in text

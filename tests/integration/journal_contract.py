"""The Journal contract: behaviour every implementation must show (memory and Table storage).

Not collected by itself (functions are named ``contract_*``): ``test_journal.py`` imports them as
``test_*`` and provides the ``journal`` fixture (parametrised over implementations) and ``clock``.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.journal_format import BODY_LIMIT, TEXT_LIMIT, rfc3339
from shared.errors import NotFound, Rejected
from shared.lifecycle import BatchState, EmissionState, IllegalTransition
from shared.ports import BatchRecord, StepRecord, Tally


class ManualClock:
    """A clock that only moves when told to, so times and orderings are exact."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


START = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
PLAN: dict[str, Any] = {"steps": [{"kind": "EnrollmentDisabled", "target": "dev-1"}], "warnings": []}


def begin(journal: Any, event_id: str, target: str = "dev-1", event_type: str = "lost", **kw: Any) -> Any:
    args: dict[str, Any] = {"source": "tracker", "correlation_id": f"corr-{event_id}", "plan": PLAN}
    args.update(kw)
    return journal.begin(event_id, event_type=event_type, target=target, **args)


def step(index: int, outcome: str = "done", **kw: Any) -> StepRecord:
    return StepRecord(index=index, kind="EnrollmentDisabled", target="dev-1", outcome=outcome, **kw)


# -- begin -------------------------------------------------------------------------------------------


def contract_begin_records_a_received_event_with_its_plan(journal: Any, clock: ManualClock) -> None:
    record = begin(journal, "evt-1", plan={"steps": ({"kind": "GroupDisabled"},), "n": 1})
    assert record.status == "received"
    assert (record.event_id, record.event_type, record.target) == ("evt-1", "lost", "dev-1")
    assert record.source == "tracker"
    assert record.correlation_id == "corr-evt-1"
    assert record.plan == {"steps": [{"kind": "GroupDisabled"}], "n": 1}
    assert record.created_at == record.updated_at == rfc3339(clock())
    assert record.steps == ()
    assert journal.get("evt-1") == record


def contract_begin_of_a_known_event_returns_the_stored_record_unchanged(
    journal: Any, clock: ManualClock
) -> None:
    first = begin(journal, "evt-1")
    journal.record_step("evt-1", step(0))
    clock.advance()
    again = begin(journal, "evt-1", target="other", event_type="found", correlation_id="x", plan={})
    assert again.target == first.target
    assert again.event_type == "lost"
    assert again.correlation_id == first.correlation_id
    assert again.plan == PLAN
    assert again.created_at == first.created_at
    assert [s.index for s in again.steps] == [0], "a redelivery sees where the first delivery stopped"


def contract_concurrent_begins_create_the_event_exactly_once(journal: Any) -> None:
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def deliver(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(begin(journal, "evt-race", correlation_id=f"delivery-{n}"))
        except Exception as exc:  # noqa: BLE001 - collected; the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(results) == threads_n
    winners = {r.correlation_id for r in results}
    assert len(winners) == 1, f"every delivery must see the one stored record, saw {winners}"
    assert journal.get("evt-race").correlation_id in winners


def contract_get_of_an_unknown_event_is_none(journal: Any) -> None:
    assert journal.get("never-seen") is None


@pytest.mark.parametrize("bad", ["", "x" * 257])
def contract_unusable_event_ids_are_rejected_before_reaching_storage(journal: Any, bad: str) -> None:
    with pytest.raises(Rejected) as caught:
        begin(journal, bad)
    assert caught.value.errors[0].field == "eventId"


# -- steps -------------------------------------------------------------------------------------------


def contract_steps_come_back_in_index_order_with_the_journal_time(journal: Any, clock: ManualClock) -> None:
    begin(journal, "evt-1")
    clock.advance()
    journal.record_step("evt-1", step(1, hub="hub-a.example", before="enabled", after="disabled"))
    journal.record_step("evt-1", step(0, at="caller time is ignored"))
    record = journal.get("evt-1")
    assert [s.index for s in record.steps] == [0, 1]
    assert all(s.at == rfc3339(clock()) for s in record.steps)
    assert (record.steps[1].hub, record.steps[1].before, record.steps[1].after) == (
        "hub-a.example", "enabled", "disabled")


def contract_a_retried_step_appends_an_attempt_and_the_latest_wins(journal: Any, clock: ManualClock) -> None:
    begin(journal, "evt-1")
    journal.record_step("evt-1", step(0, outcome="failed", error="Throttled"))
    clock.advance()
    journal.record_step("evt-1", step(0, outcome="done"))
    journal.record_step("evt-1", step(1, outcome="skipped"))
    steps = journal.get("evt-1").steps
    assert [(s.index, s.outcome, s.error) for s in steps] == [(0, "done", None), (1, "skipped", None)]


def contract_a_later_attempt_never_hides_the_attempt_that_made_the_change(journal: Any) -> None:
    begin(journal, "evt-1")
    journal.record_step("evt-1", step(0, outcome="done", before="enabled", after="disabled"))
    journal.record_step("evt-1", step(0, outcome="already_done", before="disabled", after="disabled"))
    journal.record_step("evt-1", step(0, outcome="failed", error="late duplicate"))
    kept = journal.get("evt-1").steps[0]
    assert (kept.outcome, kept.before, kept.after) == ("done", "enabled", "disabled")


def contract_the_first_step_moves_the_event_to_in_progress(journal: Any, clock: ManualClock) -> None:
    begin(journal, "evt-1")
    clock.advance()
    journal.record_step("evt-1", step(0))
    record = journal.get("evt-1")
    assert record.status == "in_progress"
    assert record.updated_at == rfc3339(clock()) != record.created_at


def contract_a_step_of_an_unknown_event_is_not_found(journal: Any) -> None:
    with pytest.raises(NotFound):
        journal.record_step("nope", step(0))


def contract_long_free_text_is_clamped(journal: Any) -> None:
    begin(journal, "evt-1")
    journal.record_step("evt-1", step(0, error="e" * (TEXT_LIMIT + 10)))
    assert len(journal.get("evt-1").steps[0].error) == TEXT_LIMIT


# -- finish ------------------------------------------------------------------------------------------


def contract_finish_sets_status_error_and_time(journal: Any, clock: ManualClock) -> None:
    begin(journal, "evt-1")
    journal.record_step("evt-1", step(0))
    clock.advance(5)
    journal.finish("evt-1", "failed", error="Permanent: hub refused")
    record = journal.get("evt-1")
    assert (record.status, record.error, record.updated_at) == ("failed", "Permanent: hub refused",
                                                              rfc3339(clock()))
    journal.finish("evt-1", "in_progress")  # resumed on purpose
    journal.finish("evt-1", "completed")
    record = journal.get("evt-1")
    assert (record.status, record.error) == ("completed", None)
    assert len(record.steps) == 1


def contract_finish_refuses_unknown_statuses_and_events(journal: Any) -> None:
    begin(journal, "evt-1")
    with pytest.raises(IllegalTransition, match="unknown event status"):
        journal.finish("evt-1", "done-ish")
    with pytest.raises(NotFound):
        journal.finish("nope", "completed")


@pytest.mark.parametrize(("first", "then"), [("completed", "failed"), ("completed", "in_progress"),
                                             ("refused", "completed"), ("failed", "completed")])
def contract_finish_follows_the_one_transition_table(journal: Any, first: str, then: str) -> None:
    begin(journal, "evt-1")
    journal.finish("evt-1", first)
    with pytest.raises(IllegalTransition):
        journal.finish("evt-1", then)
    assert journal.get("evt-1").status == first


def contract_begin_keeps_the_fingerprint_of_the_first_body(journal: Any) -> None:
    begin(journal, "evt-1", fingerprint="a" * 64)
    again = begin(journal, "evt-1", target="dev-9", fingerprint="b" * 64)
    assert (again.fingerprint, again.target) == ("a" * 64, "dev-1")


# -- target leases -----------------------------------------------------------------------------------


def contract_a_target_lease_has_one_live_holder(journal: Any, clock: ManualClock) -> None:
    assert journal.claim_target("Dev-1", "evt-a", 30)
    assert journal.claim_target("dev-1", "evt-a", 30), "the holder may extend it"
    assert not journal.claim_target("DEV-1", "evt-b", 30)
    assert journal.claim_target("dev-2", "evt-b", 30), "other targets are independent"
    journal.release_target("dev-1", "evt-b")  # not the holder: nothing happens
    assert not journal.claim_target("dev-1", "evt-b", 30)
    journal.release_target("dev-1", "evt-a")
    assert journal.claim_target("dev-1", "evt-b", 30)


def contract_an_expired_lease_can_be_taken_over(journal: Any, clock: ManualClock) -> None:
    assert journal.claim_target("dev-1", "evt-a", 30)
    clock.advance(31)
    assert journal.claim_target("dev-1", "evt-b", 30)
    journal.release_target("dev-1", "evt-a")  # the old holder's late release leaves the new lease
    assert not journal.claim_target("dev-1", "evt-c", 30)


def contract_concurrent_claims_of_a_target_have_exactly_one_winner(journal: Any) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def claim(holder: str) -> None:
        barrier.wait()
        if journal.claim_target("dev-1", holder, 30):
            wins.append(holder)

    threads = [threading.Thread(target=claim, args=(f"evt-{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


# -- scale-out emission and batches --------------------------------------------------------------------


def _batch(number: int, state: BatchState = BatchState.EMITTED, **kw: Any) -> BatchRecord:
    return BatchRecord(step_index=1, run=1, number=number, hub="hub-a.example", action="disable",
                       device_ids=tuple(f"d-{number}-{i}" for i in range(3)), state=state, **kw)


def contract_an_emission_run_is_claimed_once_and_its_batches_kept(journal: Any) -> None:
    begin(journal, "evt-g", target="grp")
    assert journal.latest_emission("evt-g", 1) is None
    assert journal.start_emission("evt-g", 1, 1)
    assert not journal.start_emission("evt-g", 1, 1), "a duplicate delivery does not emit again"
    assert journal.latest_emission("evt-g", 1).state == EmissionState.EMITTING
    for n in (1, 2):
        journal.record_batch("evt-g", _batch(n))
    journal.end_emission("evt-g", 1, 1, 2)
    emission = journal.latest_emission("evt-g", 1)
    assert (emission.run, emission.state, emission.batches) == (1, EmissionState.RECORDED, 2)
    kept = journal.batches("evt-g", 1, 1)
    assert [(b.number, b.device_ids, b.state) for b in kept] == [
        (1, ("d-1-0", "d-1-1", "d-1-2"), BatchState.EMITTED),
        (2, ("d-2-0", "d-2-1", "d-2-2"), BatchState.EMITTED)]
    assert journal.get("evt-g").steps == (), "batches are not steps"


def contract_a_batch_settles_once_and_keeps_its_device_set(journal: Any) -> None:
    begin(journal, "evt-g", target="grp")
    journal.start_emission("evt-g", 1, 1)
    journal.record_batch("evt-g", _batch(1))
    applied = _batch(1, BatchState.APPLIED, tally=Tally(changed=3))
    assert journal.settle_batch("evt-g", applied)
    assert not journal.settle_batch("evt-g", _batch(1, BatchState.APPLIED, tally=Tally(unchanged=3)))
    assert not journal.settle_batch("evt-g", _batch(1, BatchState.FAILED))
    forged = BatchRecord(1, 1, 1, "hub-a.example", "disable", ("victim",), BatchState.EMITTED)
    assert not journal.settle_batch("evt-g", forged)
    kept = journal.batches("evt-g", 1, 1)[0]
    assert (kept.state, kept.tally, kept.device_ids) == (BatchState.APPLIED, Tally(changed=3),
                                                        ("d-1-0", "d-1-1", "d-1-2"))
    assert not journal.settle_batch("evt-g", _batch(9, BatchState.APPLIED)), "an unknown batch never settles"


def contract_a_failed_batch_may_be_sent_again(journal: Any) -> None:
    begin(journal, "evt-g", target="grp")
    journal.start_emission("evt-g", 1, 1)
    journal.record_batch("evt-g", _batch(1))
    assert journal.settle_batch("evt-g", _batch(1, BatchState.FAILED, tally=Tally(failed=3), error="503"))
    assert journal.settle_batch("evt-g", _batch(1, BatchState.EMITTED))
    assert journal.settle_batch("evt-g", _batch(1, BatchState.APPLIED, tally=Tally(changed=3)))


# -- history and listings ----------------------------------------------------------------------------


def _completed(journal: Any, clock: ManualClock, event_id: str, target: str, event_type: str) -> None:
    begin(journal, event_id, target=target, event_type=event_type)
    journal.record_step(event_id, step(0))
    journal.finish(event_id, "completed")
    clock.advance()


def contract_history_lists_every_event_on_a_target_newest_first_case_insensitively(
    journal: Any, clock: ManualClock
) -> None:
    _completed(journal, clock, "evt-a", "Dev-1", "lost")
    _completed(journal, clock, "evt-b", "dev-2", "lost")
    begin(journal, "evt-c", target="DEV-1", event_type="stolen")  # still running: it counts too
    clock.advance()
    _completed(journal, clock, "evt-d", "dev-1", "found")
    begin(journal, "evt-e", target="dev-1")
    journal.finish("evt-e", "failed", error="x")
    history = list(journal.history("DEV-1"))
    assert [(r.event_id, r.event_type, r.status) for r in history] == [
        ("evt-e", "lost", "failed"), ("evt-d", "found", "completed"), ("evt-c", "stolen", "received"),
        ("evt-a", "lost", "completed")]
    history = [r for r in history if r.status == "completed"]
    assert [s.kind for s in history[1].steps] == ["EnrollmentDisabled"], "found needs what lost did"
    assert list(journal.history("nobody")) == []


def contract_iter_events_filters_by_status_and_streams_every_event(journal: Any, clock: ManualClock) -> None:
    ids = [f"evt-{n:02d}" for n in range(7)]
    for n, event_id in enumerate(ids):
        begin(journal, event_id)
        if n % 2:
            journal.finish(event_id, "completed")
    everything = journal.iter_events()
    assert iter(everything) is everything, "a lazy iterator, not a list"
    assert [r.event_id for r in everything] == ids
    assert [r.event_id for r in journal.iter_events("completed")] == ids[1::2]
    assert [r.event_id for r in journal.iter_events("received")] == ids[0::2]
    assert list(journal.iter_events("refused")) == []
    assert all(r.steps == () for r in journal.iter_events())


# -- rejections --------------------------------------------------------------------------------------


def contract_rejections_keep_body_field_errors_and_event_id(journal: Any, clock: ManualClock) -> None:
    body = '{"eventType": "misplaced", "eventId": "evt-9"}'
    errors = [{"field": "eventType", "reason": "not one of lost, stolen, ..."}]
    rejection_id = journal.record_rejection(body, errors, "evt-9")
    other = journal.record_rejection("not json at all \x00", [{"field": "$", "reason": "not JSON"}], None)
    assert rejection_id != other
    kept = journal.get_rejection(rejection_id)
    assert (kept.body, list(kept.errors), kept.event_id, kept.at) == (body, errors, "evt-9", rfc3339(clock()))
    assert journal.get_rejection(other).body == "not json at all \x00"
    assert [r.rejection_id for r in journal.iter_rejections("evt-9")] == [rejection_id]
    assert sorted(r.rejection_id for r in journal.iter_rejections()) == sorted([rejection_id, other])
    assert journal.get("evt-9") is None, "a rejected message never claims its eventId"
    assert journal.get_rejection("0" * 32) is None


def contract_a_huge_rejected_body_is_truncated_and_flagged(journal: Any) -> None:
    rejection_id = journal.record_rejection("b" * (BODY_LIMIT + 1), [], None)
    kept = journal.get_rejection(rejection_id)
    assert kept.truncated
    assert len(kept.body) == BODY_LIMIT


def contract_limits_count_utf16_units_as_table_storage_does(journal: Any) -> None:
    emoji = "\U0001F600"  # two UTF-16 code units
    rejection_id = journal.record_rejection(emoji * 20_000, [{"field": "note", "reason": "too long"}], None)
    kept = journal.get_rejection(rejection_id)
    assert kept.body == emoji * 20_000
    assert not kept.truncated
    begin(journal, "evt-1")
    journal.record_step("evt-1", step(0, error=emoji * TEXT_LIMIT))
    assert journal.get("evt-1").steps[0].error == emoji * (TEXT_LIMIT // 2)


# -- awkward keys ------------------------------------------------------------------------------------

AWKWARD = ["a/b", "a~2Fb", "back\\slash", "hash#q?", "100%'quoted'", "tab\there", "ünï-😀", "A/B"]


def contract_event_ids_with_awkward_characters_stay_distinct_and_case_sensitive(journal: Any) -> None:
    for n, event_id in enumerate(AWKWARD):
        begin(journal, event_id, target=f"T/{n}#?'", correlation_id=str(n))
    for n, event_id in enumerate(AWKWARD):
        record = journal.get(event_id)
        assert (record.event_id, record.correlation_id, record.target) == (event_id, str(n), f"T/{n}#?'")
        journal.record_step(event_id, step(0))
        journal.finish(event_id, "completed")
        assert [r.event_id for r in journal.history(f"t/{n}#?'")] == [event_id]
    assert sorted(r.event_id for r in journal.iter_events("completed")) == sorted(AWKWARD)


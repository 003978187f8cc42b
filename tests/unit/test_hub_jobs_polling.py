"""How ``HubImportJobs`` waits for a job (shared/adapters/hub_jobs.py): the poll backs off to 5 s, and the
deadline grows with the job's size and moves on while the job progresses. A fake job manager and a fake
clock (advanced by the runner's own sleeps), so minutes of job time take no wall time."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from shared.adapters.blob_container import BlobContainer
from shared.adapters.hub_jobs import MAX_POLL_SECONDS, SLOWEST_DEVICES_PER_SECOND, HubImportJobs
from shared.errors import Permanent, Transient
from tests.support.doubles import FakeTime


class FakeManager:
    """Answers the create with ``enqueued`` and each poll with the next (status, progress) of ``polls``."""

    def __init__(self, polls: Iterator[tuple[str, int]]) -> None:
        self.polls = polls
        self.gets = 0

    def create_import_export_job(self, properties: Any) -> Any:
        return SimpleNamespace(job_id="job-1", status="enqueued", failure_reason=None, progress=0)

    def get_import_export_job(self, job_id: str) -> Any:
        self.gets += 1
        status, progress = next(self.polls)
        return SimpleNamespace(job_id=job_id, status=status, failure_reason="boom", progress=progress)


def runner(polls: Iterator[tuple[str, int]], fake: FakeTime, timeout: float = 60.0) -> HubImportJobs:
    return HubImportJobs("hub-1", cast(Any, FakeManager(polls)), cast(BlobContainer, None), timeout=timeout,
                         sleep=fake.sleep, clock=fake.clock)


def test_polls_back_off_from_the_first_interval_to_five_seconds() -> None:
    fake = FakeTime()
    polls = iter([("running", 10)] * 8 + [("completed", 100)])
    assert runner(polls, fake)._run({"type": "import"}, 100) == "job-1"
    assert fake.sleeps[:4] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert fake.sleeps[-3:] == [MAX_POLL_SECONDS] * 3
    assert len(fake.sleeps) == 9


def test_a_job_stuck_in_the_queue_is_given_up_after_the_timeout_plus_its_size_allowance() -> None:
    fake = FakeTime()
    stuck = iter(lambda: ("enqueued", 0), None)
    with pytest.raises(Transient, match=r"still enqueued after 60\.0s without progress"):
        runner(stuck, fake)._run({"type": "import"}, 5000)
    allowance = 60 + 5000 / SLOWEST_DEVICES_PER_SECOND  # 160 s
    assert allowance < fake.now <= allowance + MAX_POLL_SECONDS


def test_a_job_that_keeps_progressing_may_run_far_past_the_timeout() -> None:
    fake = FakeTime()
    progressing = iter([("running", p) for p in range(1, 100)] + [("completed", 100)])  # ~8 min of polls
    assert runner(progressing, fake)._run({"type": "export"}, 0) == "job-1"
    assert fake.now > 8 * 60


def test_a_failed_job_is_permanent() -> None:
    with pytest.raises(Permanent, match="ended failed: boom"):
        runner(iter([("running", 50), ("failed", 50)]), FakeTime())._run({"type": "import"}, 10)

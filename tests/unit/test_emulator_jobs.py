"""The emulator's job timing and job runner without storage: blob reads and writes are replaced by a dict.

Timing is real (worker threads and ``Event.wait``) but compressed hard, so each job lasts well under a second.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from emulator.http import ServiceError
from emulator.iothub import jobs as jobs_module
from emulator.iothub.jobs import JobRunner
from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, JobTiming, check_number
from emulator.iothub.state import HubState
from emulator.knobs import Knobs

STORAGE = "http://127.0.0.1:1/devstoreaccount1/c?sv=x"


def test_the_default_rate_is_one_million_devices_an_hour() -> None:
    assert pytest.approx(277.78, abs=0.01) == DEFAULT_DEVICES_PER_SECOND


def test_timing_is_real_service_time_divided_by_the_compression_factor() -> None:
    timing = JobTiming(devices_per_second=100, start_seconds=10, compression=5)
    assert timing.real_seconds(1000) == 20.0  # 10 s start + 1,000 / 100
    assert (timing.start_delay(), timing.run_seconds(1000)) == (2.0, 2.0)
    assert timing.processed(1000, 1.0) == 500
    assert timing.processed(1000, 1.999999) == 999
    assert timing.processed(1000, 2.0) == 1000  # every device at the modelled end, whatever the rounding
    assert timing.processed(0, 0.0) == 0


@pytest.mark.parametrize(("value", "positive", "error"), [
    (0, True, ValueError), (-1, False, ValueError), (float("inf"), True, ValueError),
    ("nan", False, ValueError), ("x", True, ValueError), (True, True, TypeError), (None, False, TypeError),
])
def test_check_number_names_the_knob_and_the_bound(value: Any, positive: bool, error: type) -> None:
    with pytest.raises(error, match=r"^jobRate must be a (finite )?number (> 0|>= 0); got "):
        check_number("jobRate", value, positive=positive)


def test_check_number_accepts_numbers_and_numeric_strings() -> None:
    assert check_number("k", "2.5", positive=True) == 2.5
    assert check_number("k", 0, positive=False) == 0.0


def test_knobs_hand_jobs_their_timing_and_reject_bad_values_atomically() -> None:
    knobs = Knobs()
    knobs.update({"jobDevicesPerSecond": 500, "jobStartSeconds": 4, "timeCompression": 8}, ["hub-1"])
    assert knobs.job_timing() == JobTiming(500.0, 4.0, 8.0)
    with pytest.raises(ServiceError) as bad:
        knobs.update({"jobStartSeconds": 1, "jobDevicesPerSecond": -5}, ["hub-1"])
    assert (bad.value.status, bad.value.code) == (400, "BadRequest")
    assert "jobDevicesPerSecond" in bad.value.message
    assert knobs.job_timing() == JobTiming(500.0, 4.0, 8.0)  # the good value was not applied either
    with pytest.raises(ServiceError, match="units must be a whole number > 0"):
        knobs.update({"units": 1.5}, ["hub-1"])


class Clock:
    """A ``JobClock``: fixed timing, ended jobs recorded."""

    def __init__(self, timing: JobTiming) -> None:
        self.timing = timing
        self.ended: list[dict[str, Any]] = []

    def job_timing(self) -> JobTiming:
        return self.timing

    def record_job(self, hub: str, summary: dict[str, Any]) -> None:
        self.ended.append({"hub": hub, **summary})


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Blob storage as a dict keyed by the blob URL."""
    store: dict[str, str] = {}
    monkeypatch.setattr(jobs_module, "_get_blob", lambda url: store[url])
    monkeypatch.setattr(jobs_module, "_put_blob", store.__setitem__)
    return store


def blob_url(name: str) -> str:
    return jobs_module._blob_url(STORAGE, name)


def start_import(runner: JobRunner, blobs: dict[str, str], count: int) -> str:
    lines = [{"id": f"d-{i}", "importMode": "create"} for i in range(count)]
    blobs[blob_url("devices.txt")] = "\n".join(json.dumps(line) for line in lines)
    job = runner.create({"type": "import", "inputBlobContainerUri": STORAGE,
                         "outputBlobContainerUri": STORAGE})
    assert (job["status"], job["progress"]) == ("enqueued", 0)
    return str(job["jobId"])


def watch(runner: JobRunner, state: HubState, job_id: str, until: float) -> list[tuple[float, str, int, int]]:
    """(elapsed, status, progress, devices in the hub) every 10 ms until the job ends or ``until`` passes."""
    started, seen = time.monotonic(), []
    while time.monotonic() - started < until:
        job = runner.get(job_id)
        seen.append((time.monotonic() - started, job["status"], job["progress"], len(state.raw())))
        if job["status"] not in ("enqueued", "running"):
            break
        time.sleep(0.01)
    return seen


def test_an_import_applies_its_devices_progressively_and_completes_at_the_modelled_end(
        blobs: dict[str, str]) -> None:
    """0.1 s start + 400 devices at 1,000/s: completed 0.5 s after creation (real time: F = 1)."""
    clock = Clock(JobTiming(devices_per_second=1000, start_seconds=0.1))
    state = HubState("hub-1")
    runner = JobRunner(state, clock)
    seen = watch(runner, state, start_import(runner, blobs, 400), until=5)
    assert seen[-1][1:] == ("completed", 100, 400)
    assert all(devices == 0 for _, status, _, devices in seen if status == "enqueued")
    assert any(0 < progress < 100 and 0 < devices < 400 for _, status, progress, devices in seen
               if status == "running")
    assert min(t for t, status, _, _ in seen if status == "completed") >= 0.5 - 0.02
    assert clock.ended == [{"hub": "hub-1", "jobId": runner.list()[0]["jobId"], "type": "import",
                            "status": "completed", "devices": 400, "modelledRealSeconds": pytest.approx(0.5)}]


def test_a_cancelled_import_stops_where_it_is_and_frees_the_hub(blobs: dict[str, str]) -> None:
    clock = Clock(JobTiming(devices_per_second=200, start_seconds=0))
    state = HubState("hub-1")
    runner = JobRunner(state, clock)
    job_id = start_import(runner, blobs, 400)  # 2 s of work
    with pytest.raises(ServiceError) as busy:
        runner.create({"type": "export", "outputBlobContainerUri": STORAGE})
    assert (busy.value.status, busy.value.code) == (429, "ThrottlingMaxActiveJobCountExceeded")
    time.sleep(0.3)
    assert runner.cancel(job_id)["status"] == "cancelled"
    with state.lock:  # waits for a chunk already being applied; any later one sees the cancel
        applied = len(state.raw())
    time.sleep(0.3)
    assert 0 < applied == len(state.raw()) < 400  # applied lines stay; nothing more is applied
    assert runner.get(job_id)["status"] == "cancelled"
    assert clock.ended == []
    assert runner.create({"type": "export", "outputBlobContainerUri": STORAGE})["status"] == "enqueued"


def test_an_export_reads_the_registry_when_it_starts_and_writes_its_blob_at_the_end(
        blobs: dict[str, str]) -> None:
    state = HubState("hub-1")
    state.seed_devices([{"deviceId": f"e-{i}"} for i in range(50)])
    runner = JobRunner(state, Clock(JobTiming(devices_per_second=250, start_seconds=0.05)))
    job = runner.create({"type": "export", "outputBlobContainerUri": STORAGE})
    time.sleep(0.12)  # running (0.05 s start + 0.2 s for 50 devices): no blob yet
    assert runner.get(job["jobId"])["status"] == "running"
    assert blob_url("devices.txt") not in blobs
    seen = watch(runner, state, job["jobId"], until=5)
    assert seen[-1][1] == "completed"
    assert len(blobs[blob_url("devices.txt")].splitlines()) == 50


def test_a_reset_stops_a_waiting_job(blobs: dict[str, str]) -> None:
    clock = Clock(JobTiming(start_seconds=3600))
    runner = JobRunner(HubState("hub-1"), clock)
    runner.create({"type": "export", "outputBlobContainerUri": STORAGE})
    runner.reset()
    assert runner.list() == []
    assert runner.create({"type": "export", "outputBlobContainerUri": STORAGE})["status"] == "enqueued"


def test_a_hub_reset_leaves_nothing_of_a_running_import_in_the_fresh_registry(blobs: dict[str, str]) -> None:
    state = HubState("hub-1")
    runner = JobRunner(state, Clock(JobTiming(devices_per_second=500, start_seconds=0)))
    state.reset_hooks.append(runner.reset)  # as emulator.iothub.routes.HubService wires it
    start_import(runner, blobs, 400)  # 0.8 s of work
    time.sleep(0.2)
    assert 0 < len(state.raw()) < 400
    state.reset()
    time.sleep(0.3)
    assert len(state.raw()) == 0


def test_cli_flags_set_the_job_knobs_and_refuse_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.__main__ import parse_args

    knobs = parse_args(["--state-dir", "x", "--job-rate", "50", "--job-start-latency", "0"]).knob_defaults()
    assert (knobs["jobDevicesPerSecond"], knobs["jobStartSeconds"]) == (50, 0)
    for flag, value, message in (("--job-rate", "0", "--job-rate must be a finite number > 0; got 0.0"),
                                 ("--job-start-latency", "-2", "must be a finite number >= 0; got -2.0"),
                                 ("--time-compression", "0", "--time-compression must be a finite number")):
        with pytest.raises(SystemExit):
            parse_args(["--state-dir", "x", flag, value])
        assert message in capsys.readouterr().err

"""The benchmark's smallest configuration end to end: emulator process, Azurite with blob, the group-purge
sides in their own processes (the engine as the product runs it — with a threshold of 50 devices per hub its
100-device hubs take import jobs —, the engine on the bulk path alone, naive), memory runs, single events
through Azurite + the local host; then the three output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import BenchOptions, run, write_outputs


def test_smallest_benchmark_runs_end_to_end_and_writes_json_markdown_and_png(tmp_path: Path) -> None:
    options = BenchOptions(sizes=(300,), memory_sizes=(300, 600), naive_sample=90, compression=60.0,
                           events=3, event_interval=0.3, import_job_threshold=50, out=tmp_path)
    results = run(options)
    json_path, md_path, png_path = write_outputs(results, tmp_path)

    [group] = results["group"]
    assert (group["engine"]["measuredDevices"], group["engine"]["failed"]) == (300, 0)
    assert (group["naive"]["measuredDevices"], group["naive"]["sampled"]) == (90, True)
    engine, bulk = group["engine"], group["engineBulk"]
    assert (engine["importJobs"], engine["jobsCreated"]) == (3, 6)  # per hub: export + import (disable)
    assert engine["registryOpsPerDevice"] == 0.0  # jobs spend the hubs' jobs budget, not the registry's
    assert engine["jobsOps"] >= 6  # creates + status polls
    assert engine["blobRequests"] > 0
    # the emulator's default job model: per hub an export of its 100 devices, then an import of 100 lines
    assert (engine["jobsInChain"], engine["jobDevicePasses"]) == (2, 200)
    assert engine["jobsRealSeconds"] == pytest.approx(2 * 10.0 + 200 / (1_000_000 / 3600))
    assert group["jobsSlower"]["engineRealSeconds"] > engine["realSeconds"]
    assert group["breakEvenJobRate"] > 0
    assert (bulk["measuredDevices"], bulk["failed"], bulk["jobsCreated"]) == (300, 0, 0)
    assert bulk["registryOpsPerDevice"] == 1.0  # bulk: one registry unit per device
    assert group["naive"]["registryOpsPerDevice"] == 2.0  # get + update per device
    assert results["meta"]["importJobThreshold"] == 50
    memory = {(m["path"], m["devices"]): m for m in results["memory"]}
    assert sorted(memory) == [("bulk", 300), ("bulk", 600), ("product", 300), ("product", 600)]
    assert all(m["purged"] == devices and m["failed"] == 0 for (_, devices), m in memory.items())
    assert (memory["product", 600]["importJobs"], memory["bulk", 600]["importJobs"]) == (3, 0)
    assert results["single"]["completed"] == 3
    assert results["single"]["roundTripsPerEvent"] > 0
    assert json.loads(json_path.read_text(encoding="utf-8"))["meta"]["timeCompression"] == 60.0
    markdown = md_path.read_text(encoding="utf-8")
    assert "## Group purge" in markdown
    assert "engine (import jobs)" in markdown
    assert "engine, bulk path only" in markdown
    assert "engine, jobs 10x slower (modelled)" in markdown
    assert "10 s start latency, then 278 devices/s" in markdown
    assert png_path.read_bytes().startswith(b"\x89PNG")

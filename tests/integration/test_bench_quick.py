"""The benchmark's smallest configuration end to end: emulator process, both group-purge sides in their own
processes, memory runs, single events through Azurite + the local host; then the three output files."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run import BenchOptions, run, write_outputs


def test_smallest_benchmark_runs_end_to_end_and_writes_json_markdown_and_png(tmp_path: Path) -> None:
    options = BenchOptions(sizes=(300,), memory_sizes=(300, 600), naive_sample=90, compression=60.0,
                           events=3, event_interval=0.3, out=tmp_path)
    results = run(options)
    json_path, md_path, png_path = write_outputs(results, tmp_path)

    [group] = results["group"]
    assert (group["engine"]["measuredDevices"], group["engine"]["failed"]) == (300, 0)
    assert (group["naive"]["measuredDevices"], group["naive"]["sampled"]) == (90, True)
    assert group["engine"]["registryOpsPerDevice"] <= 1.0  # bulk: one registry unit per device at most
    assert group["naive"]["registryOpsPerDevice"] == 2.0  # get + update per device
    assert [m["purged"] for m in results["memory"]] == [300, 600]
    assert results["single"]["completed"] == 3
    assert results["single"]["roundTripsPerEvent"] > 0
    assert json.loads(json_path.read_text(encoding="utf-8"))["meta"]["timeCompression"] == 60.0
    assert "## Group purge" in md_path.read_text(encoding="utf-8")
    assert png_path.read_bytes().startswith(b"\x89PNG")

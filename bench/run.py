"""Runs every benchmark against one emulator process and assembles the results dict."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.emu import running_emulator
from bench.group import MEMORY_PATHS, GroupSettings, compare, memory_run, symmetric_run
from bench.markdown import render
from bench.plot import plot, plot_storm
from bench.storm_report import storm_summary, storm_verdict
from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS

HUBS = 3


@dataclass(frozen=True)
class BenchOptions:
    sizes: tuple[int, ...] = (1000, 10000)
    memory_sizes: tuple[int, ...] = (1000, 100000)
    symmetric_sizes: tuple[int, ...] = ()  # symmetric-key groups (the CLI: quick 1000, full 1000 + 10000)
    naive_sample: int = 1000
    compression: float = 10.0
    action: str = "disable"
    events: int = 100
    latency_ms: float = 20.0
    event_interval: float = 0.5
    import_job_threshold: int | None = None  # None: the product default (GROUP_IMPORT_JOB_THRESHOLD)
    job_rate: float = DEFAULT_DEVICES_PER_SECOND  # emulator import/export jobs, real-service time
    job_start: float = DEFAULT_START_SECONDS
    single: bool = True
    storm_events: int = 0  # 0: no storm benchmark
    storm_compression: float = 1.0  # real time: at a higher F the local host, not the services, binds it
    only: str | None = None  # "storm": skip every other benchmark
    out: Path = Path("bench/out")
    command: str = "python -m bench"
    targets: report.Targets = field(default_factory=report.Targets)


def run(options: BenchOptions, log: Callable[[str], None] = lambda _l: None) -> dict[str, Any]:
    """Azurite with blob serves the engine's import jobs (as ``AzureWebJobsStorage`` does for the app)."""
    from devhost.azurite import start_azurite

    raw: dict[str, Any] = {"group": [], "symmetric": [], "memory": [], "single": {"skipped": "--skip-single"},
                           "storm": {"skipped": "--skip-storm"}}
    if options.only == "storm":
        options = replace(options, sizes=(), symmetric_sizes=(), memory_sizes=(), single=False)
        raw["single"] = {"skipped": "--only storm"}
    elif options.only == "single":
        options = replace(options, sizes=(), symmetric_sizes=(), memory_sizes=(), storm_events=0)
        raw["storm"] = {"skipped": "--only single"}
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_emulator(Path(tmp) / "emulator", hubs=HUBS, time_compression=options.compression) as emu,
        start_azurite(blob=True) as blobs,
    ):
        settings = GroupSettings(
            action=options.action, time_compression=options.compression, naive_sample=options.naive_sample,
            storage=blobs.connection_string, import_job_threshold=options.import_job_threshold,
            job_rate=options.job_rate, job_start=options.job_start,
        )
        for size in options.sizes:
            log(f"group purge: {size:,} devices (engine; engine on the bulk path if it made jobs; naive)")
            started = time.monotonic()
            raw["group"].append(compare(emu, size, settings))
            log(f"  done in {time.monotonic() - started:.0f} s")
        for size in options.symmetric_sizes:
            log(f"symmetric-key group purge: {size:,} devices (engine; bulk path alone if it made jobs)")
            started = time.monotonic()
            raw["symmetric"].append(symmetric_run(emu, size, settings))
            log(f"  done in {time.monotonic() - started:.0f} s")
        for path in MEMORY_PATHS if options.memory_sizes else ():
            for size in options.memory_sizes:
                log(f"memory: {size:,} devices, {path}")
                raw["memory"].append(memory_run(emu, size, settings, path))
        if options.single:
            log(f"single events: {options.events} paced + {options.events} burst")
            from bench.single import run_single

            raw["single"] = run_single(
                emu, options.events, options.latency_ms, options.event_interval, Path(tmp)
            )
        if options.storm_events:
            log(f"storm: {options.storm_events:,} stolen events, coalesced then per-event "
                f"(F = {options.storm_compression:g})")
            from bench.storm import run_storm

            raw["storm"] = run_storm(
                emu, options.storm_events, options.storm_compression, Path(tmp),
                storage=blobs.connection_string, job_rate=options.job_rate, job_start=options.job_start,
                log=log,
            )
    return assemble(raw, options)


def assemble(raw: dict[str, Any], options: BenchOptions) -> dict[str, Any]:
    """Summaries and verdicts from the raw measurements (pure). The import-job target applies above the
    threshold the engine actually ran with (reported by the engine side), else the option's or default."""
    used = [g["importJobThreshold"] for g in raw["group"] if g.get("importJobThreshold") is not None]
    threshold = options.import_job_threshold or (used[0] if used else options.targets.import_job_threshold)
    targets = replace(options.targets, import_job_threshold=int(threshold))
    groups = [
        {**report.group_summary(g, targets.speedup_at_10k), "raw": {k: g[k] for k in report.SIDES if k in g}}
        for g in raw["group"]
    ]
    verdicts: list[report.Verdict] = []
    if groups:
        at_10k = [g for g in groups if g["devices"] == 10000] or [max(groups, key=lambda g: g["devices"])]
        verdicts.append(report.speedup_verdict(at_10k[0], targets))
        for g in groups:
            verdicts += report.ops_verdicts(g, targets)
    symmetric = [
        {**report.symmetric_summary(s), "raw": {k: s[k] for k in report.SYMMETRIC_SIDES if k in s}}
        for s in raw.get("symmetric", [])
    ]
    for s in symmetric:
        verdicts += report.symmetric_verdicts(s)
    memory = sorted(raw["memory"], key=lambda m: (m.get("path", "bulk"), m["devices"]))
    for path in MEMORY_PATHS:
        runs = [m for m in memory if m.get("path", "bulk") == path]
        if len(runs) >= 2:
            verdicts.append(report.memory_verdict(runs[0], runs[-1], targets))
    single = raw["single"]
    if "skipped" not in single:
        single = {**single, "cpus": os.cpu_count()}
        verdicts += report.single_verdicts(single, targets)
        single = {k: v for k, v in single.items() if k != "latencies"}
    storm = raw.get("storm") or {"skipped": "not run"}
    if "skipped" not in storm:
        storm = storm_summary(storm)
        verdicts.append(storm_verdict(storm))
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": options.command,
        "hubs": HUBS,
        "timeCompression": options.compression,
        "action": options.action,
        "naiveSample": options.naive_sample,
        "importJobThreshold": targets.import_job_threshold,
        "jobDevicesPerSecond": options.job_rate,
        "jobStartSeconds": options.job_start,
        "targets": targets.__dict__,
    }
    return {
        "meta": meta,
        "verdicts": [v.to_dict() for v in verdicts],
        "group": groups,
        "symmetric": symmetric,
        "memory": memory,
        "single": single,
        "storm": storm,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "results.json", directory / "report.md", directory / "benchmark.png"]
    paths[0].write_text(json.dumps(_json_safe(results), indent=2, sort_keys=True), encoding="utf-8")
    paths[1].write_text(render(results), encoding="utf-8")
    if results["group"] or results["memory"]:
        plot(results, paths[2])
    else:  # e.g. --only storm: nothing for the group/memory plot
        paths.pop()
    storm = results.get("storm", {})
    if storm and "skipped" not in storm:
        paths.append(directory / "storm.png")
        plot_storm(storm, paths[-1])
    return paths

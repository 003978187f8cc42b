"""The markdown report, rendered from the results dict (pure: same input, same text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.storm_report import markdown_section


def _secs(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 3600:
        return f"{value / 3600:.2f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s"


SIDE_LABELS = {"engine": "engine", "engineBulk": "engine, bulk path only", "naive": "naive"}


def _label(g: Mapping[str, Any], name: str) -> str:
    s = g[name]
    label = SIDE_LABELS[name]
    if name == "engine":
        label += " (import jobs)" if s["jobsCreated"] else " (bulk)"
    if s["sampled"]:
        label += f" (sample {s['measuredDevices']:,}, extrapolated)"
    return label


def _sides(g: Mapping[str, Any]) -> list[str]:
    return [name for name in ("engine", "engineBulk", "naive") if name in g]


def _group_table(groups: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        ("| devices | side | wall (measured, compressed) | throttle floor (real) | real service time (est.) "
         "| registry ops/device | jobs created / jobs ops | 429s seen | HTTP requests (hub+DPS / blob) "
         "| peak RSS |"),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        for name in _sides(g):
            s = g[name]
            lines.append(
                f"| {g['devices']:,} | {_label(g, name)} | {_secs(s['wallSeconds'])} "
                f"| {_secs(s['throttleFloorRealSeconds'])} ({s['throttleFloorBucket']}) "
                f"| {_secs(s['realSeconds'])} | {s['registryOpsPerDevice']:.2f} "
                f"| {s['jobsCreated']} / {s['jobsOps']:.0f} | {s['http429']} "
                f"| {s['httpRequests']:,} / {s['blobRequests']:,} | {s['peakRssMb']:.1f} MB |"
            )
        lines.append(
            f"| {g['devices']:,} | **speed-up, engine vs naive** | {g['speedupMeasured']:.1f}x | "
            f"| {g['speedupReal']:.1f}x | | | | | |"
        )
        if g.get("bulk") == "engineBulk":
            lines.append(
                f"| {g['devices']:,} | **speed-up, bulk path vs naive** | {g['speedupBulkMeasured']:.1f}x | "
                f"| {g['speedupBulkReal']:.1f}x | | | | | |"
            )
        slower = g.get("jobsSlower")
        if slower:  # sensitivity: the same run with every job on the critical path taking longer
            lines.append(
                f"| {g['devices']:,} | engine, jobs {slower['factor']:g}x slower (modelled) | | "
                f"| {_secs(slower['engineRealSeconds'])} | | | | | |"
            )
            lines.append(
                f"| {g['devices']:,} | **speed-up, jobs {slower['factor']:g}x slower** | | "
                f"| {slower['speedupReal']:.1f}x | | | | | |"
            )
    return lines


def _job_lines(groups: list[Mapping[str, Any]], meta: Mapping[str, Any]) -> list[str]:
    """The job model of the run and, per size with jobs, the rate below which the speed-up misses 50x."""
    rate, start = meta.get("jobDevicesPerSecond"), meta.get("jobStartSeconds")
    if rate is None or start is None:
        return []
    target = float(meta.get("targets", {}).get("speedup_at_10k", 50.0))
    lines = [
        (f"Import/export jobs in the emulator: **{start:g} s start latency, then {rate:.0f} devices/s** "
         "(real-service time, compressed by F like the throttle windows). The rate is Microsoft's public "
         "figure (\"an S3 hub processes ~1M devices per hour\", Azure/device-simulation-dotnet PR 310); no "
         "start latency is published, 10 s is the emulator's choice (emulator/README.md). One active job "
         "per hub, as IoT Hub allows.")
    ]
    for g in groups:
        needed = g.get("breakEvenJobRate")
        if needed is None or (isinstance(needed, float) and math.isnan(needed)):
            continue
        engine = g["engine"]
        if math.isinf(needed):
            verdict = (f"no job rate keeps the speed-up ≥ {target:g}x (the start latencies and the rest of "
                       f"the run alone take longer than naive ÷ {target:g})")
        else:
            verdict = (f"the speed-up stays ≥ {target:g}x down to a job rate of **{needed:.0f} devices/s** "
                       f"({needed / rate:.0%} of the modelled rate)")
        path = _secs(engine["jobsRealSeconds"])
        lines.append(
            f"- {g['devices']:,} devices: {engine['jobsInChain']:.0f} jobs in sequence carry "
            f"{engine['jobDevicePasses']:,.0f} devices on the critical path ({path} modelled); {verdict}."
        )
    return ["", lines[0], "", *lines[1:]] if len(lines) > 1 else ["", *lines]


def _calls_table(groups: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| devices | side | requests by kind (client side, `METHOD /path status: n`) |",
        "|---:|---|---|",
    ]
    for g in groups:
        for name in _sides(g):
            reqs = g["raw"][name].get("requests", {})
            text = ", ".join(f"`{k}`: {v:,}" for k, v in sorted(reqs.items()))
            lines.append(f"| {g['devices']:,} | {SIDE_LABELS[name]} | {text} |")
    return lines


def _symmetric_table(runs: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        ("| devices | side | wall (measured, compressed) | throttle floor (real) | real service time (est.) "
         "| real ÷ floor | registry ops/device | 429s seen | bulk calls / import jobs | failed |"),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in runs:
        for name in ("engine", "engineBulk"):
            if name not in g:
                continue
            s = g[name]
            label = SIDE_LABELS[name] + ((" (import jobs)" if s["jobsCreated"] else " (bulk)")
                                         if name == "engine" else "")
            lines.append(
                f"| {g['devices']:,} | {label} | {_secs(s['wallSeconds'])} "
                f"| {_secs(s['throttleFloorRealSeconds'])} ({s['throttleFloorBucket']}) "
                f"| {_secs(s['realSeconds'])} | {s['realOverFloor']:.2f}x | {s['registryOpsPerDevice']:.2f} "
                f"| {s['http429']} | {s['bulkCalls']} / {s['importJobs']} | {s['failed']} |"
            )
    return lines


def _symmetric(results: Mapping[str, Any]) -> list[str]:
    runs = results.get("symmetric") or []
    if not runs:
        return []
    return [
        "", "## Symmetric-key group purge (engine, action disable)", "",
        ("A symmetric-key group on the same S1 settings: before a bulk disable the engine reads each "
         "device's keys (a bulk update must carry them), one registry GET per device, reserved from the "
         "hub's budget before it is sent, so the bulk path spends 2 registry units per device and its floor "
         "is twice an X.509 group's. *real ÷ floor* is how close the purge ran to the pace the budget "
         "allows (1.00x = paced by the budget alone)."),
        "", *_symmetric_table(runs),
    ]


def _memory_table(memory: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        ("| path | action | devices | peak RSS | RSS after imports | wall (throttling off) | bulk calls "
         "| import jobs | failed |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m.get('path', 'bulk')} | {m.get('action', 'delete')} | {m['devices']:,} "
        f"| {m['peakRssMb']:.1f} MB | {m['baselineRssMb']:.1f} MB | {_secs(m['wallSeconds'])} "
        f"| {m['bulkCalls']:,} | {m.get('importJobs', 0)} | {m['failed']} |"
        for m in memory
    ]
    return lines


def _single(single: Mapping[str, Any]) -> list[str]:
    if "skipped" in single:
        return [f"Not measured: {single['skipped']}"]
    return [
        "| events | injected latency | p50 | p95 | events/s | round trips/event | completed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        (f"| {single['events']} | {single['latencyMs']:g} ms | {single['p50Seconds'] * 1000:.0f} ms "
        f"| {single['p95Seconds'] * 1000:.0f} ms | {single['eventsPerSecond']:.2f} "
        f"| {single['roundTripsPerEvent']:.2f} | {single['completed']} |"),
        "",
        "Round trips per event by kind (emulator counters ÷ events, paced phase): "
        + ", ".join(f"`{k}` {v:.2f}" for k, v in sorted(single.get("roundTripsByKind", {}).items()))
        + ". Burst: events/s = completed ÷ (last completion - first enqueue), host default concurrency.",
    ]


def render(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    factor = meta["timeCompression"]
    out = [
        f"# Benchmark report ({meta['date']})",
        "",
        f"Machine: {meta['cpus']} CPUs, Python {meta['python']}. Command: `{meta['command']}`.",
        "",
        "## Targets",
        "",
    ]
    out += [f"- {'✅' if v['met'] else '❌'} **{v['name']}** — {v['text']}" for v in results["verdicts"]]
    out += [
        "",
        "## Group purge: engine (import jobs / bulk) vs naive baseline",
        "",
        (f"{meta['hubs']} hubs on the emulator's S1 model (1 unit each: 100 identity-registry ops/min, bulk "
        f"counted per device; 100 jobs ops/min; 20 queries/min), DPS at 1,000 ops/min, action "
        f"`{meta['action']}`, every side on the same settings. Throttle windows are compressed by "
        f"**F = {factor:g}** (a window lasts {60 / factor:g} s)."),
        "",
        (f"The engine runs as the product runs in process: hubs holding at least "
        f"{meta.get('importJobThreshold') or '-'} of the group's devices (`GROUP_IMPORT_JOB_THRESHOLD`) are "
        "purged by import jobs through Azurite blob storage, the rest by throttled bulk calls. When it made "
        "jobs, the same size is measured again on the bulk path alone. Jobs spend the hubs' `jobs` budget, "
        "not the registry's: *registry ops/device* and *jobs ops* are counted apart (emulator units)."),
        "",
        ("*Real service time* converts only the paced part: floor = the largest, over every throttled "
        "bucket, of its accepted units ÷ its budget per minute (bucket in brackets); the import jobs on the "
        "critical path (their modelled real duration) come after the DPS read; paced = max(floor, DPS floor "
        "+ jobs) and real ≈ paced + max(0, wall - paced/F). The *jobs 10x slower* row keeps everything "
        "else as measured. The measured wall time x F (an upper bound) is in the JSON as "
        "`wallTimesFactorSeconds`. Sampled baselines are scaled linearly to full size."),
        "",
    ]
    out += [*_group_table(results["group"]), *_job_lines(results["group"], meta), "",
            *_calls_table(results["group"])]
    out += _symmetric(results)
    out += ["", "## Memory (engine, in-process mode, throttling off, emulator in another process)", "",
            ("*bulk*: the bulk path alone, action `delete` (bounded batches). *product*: as the product "
             "runs, action `" + str(results["meta"]["action"]) + "`: hubs at or above the import-job "
             "threshold take jobs; the group is spooled per hub to temporary files, a disable job keeps "
             "its wanted IDs in a temporary SQLite file and streams the export into the import."), ""]
    out += _memory_table(results["memory"])
    out += ["", "## Single-device events (queue → local host → emulator)", "", *_single(results["single"])]
    out += markdown_section(results.get("storm") or {"skipped": "not run"})
    if results["group"] or results["memory"]:
        out += ["", "![benchmark plot](benchmark.png)"]
    out += [""]
    return "\n".join(out)

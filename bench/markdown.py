"""The markdown report, rendered from the results dict (pure: same input, same text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _secs(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 3600:
        return f"{value / 3600:.2f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s"


def _group_table(groups: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        ("| devices | side | wall (measured, compressed) | real service time (est.) | registry ops/device "
        "| 429s seen | HTTP requests | peak RSS |"),
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        for name in ("engine", "naive"):
            s = g[name]
            note = f" (sample {s['measuredDevices']:,}, extrapolated)" if s["sampled"] else ""
            lines.append(
                f"| {g['devices']:,} | {name}{note} | {_secs(s['wallSeconds'])} | {_secs(s['realSeconds'])} "
                f"| {s['registryOpsPerDevice']:.2f} | {s['http429']} | {s['httpRequests']:,} "
                f"| {s['peakRssMb']:.1f} MB |"
            )
        lines.append(
            f"| {g['devices']:,} | **speed-up** | {g['speedupMeasured']:.1f}x | {g['speedupReal']:.1f}x "
            "| | | | |"
        )
    return lines


def _calls_table(groups: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| devices | side | requests by kind (client side, `METHOD /path status: n`) |",
        "|---:|---|---|",
    ]
    for g in groups:
        for name in ("engine", "naive"):
            reqs = g["raw"][name].get("requests", {})
            text = ", ".join(f"`{k}`: {v:,}" for k, v in sorted(reqs.items()))
            lines.append(f"| {g['devices']:,} | {name} | {text} |")
    return lines


def _memory_table(memory: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| devices | peak RSS | RSS after imports | wall (throttling off) | bulk calls | failed |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['devices']:,} | {m['peakRssMb']:.1f} MB | {m['baselineRssMb']:.1f} MB "
        f"| {_secs(m['wallSeconds'])} | {m['bulkCalls']:,} | {m['failed']} |"
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
        "## Group purge: engine vs naive baseline",
        "",
        (f"{meta['hubs']} hubs on the emulator's S1 model (1 unit each: 100 identity-registry ops/min, bulk "
        f"counted per device), action `{meta['action']}`, both sides on the same settings. Throttle windows "
        f"are compressed by **F = {factor:g}** (a window lasts {60 / factor:g} s)."),
        "",
        ("*Real service time* converts only the throttle-paced part: floor = registry ops on the busiest "
        "hub ÷ 100/min; real ≈ floor + max(0, wall - floor/F). The measured wall time x F (an upper bound) "
        "is in the JSON as `wallTimesFactorSeconds`. Sampled baselines are scaled linearly to full size."),
        "",
    ]
    out += [*_group_table(results["group"]), "", *_calls_table(results["group"])]
    out += ["", "## Memory (engine, in-process mode, action `delete`, emulator in another process)", ""]
    out += _memory_table(results["memory"])
    out += ["", "## Single-device events (queue → local host → emulator)", "", *_single(results["single"])]
    out += ["", "![benchmark plot](benchmark.png)", ""]
    return "\n".join(out)

"""The PNG: real-service-time estimates per size (log scale) and peak RSS of the memory runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here; must precede pyplot
import matplotlib.pyplot as plt

from bench.storm_report import LABELS as STORM_LABELS


def plot(results: Mapping[str, Any], path: Path) -> None:
    groups, memory = results["group"], results["memory"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = [g["devices"] for g in groups]
    for side, marker in (("engine", "o"), ("naive", "s")):
        left.plot(sizes, [g[side]["realSeconds"] / 60 for g in groups], marker=marker, label=side)
    bulk = [(g["devices"], g["engineBulk"]["realSeconds"] / 60) for g in groups if "engineBulk" in g]
    if bulk:  # the bulk path alone, where the engine itself took import jobs
        left.plot(*zip(*bulk, strict=True), marker="^", linestyle="none", label="engine, bulk path only")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("devices in the group (3 hubs, S1 x 1)")
    left.set_ylabel("estimated real service time (min)")
    left.set_title(f"Group purge (F = {results['meta']['timeCompression']:g})")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    labels = [f"{m['devices']:,}\n{m.get('path', 'bulk')}" for m in memory]
    colours = ["tab:green" if m.get("path", "bulk") == "bulk" else "tab:purple" for m in memory]
    right.bar(labels, [m["peakRssMb"] for m in memory], color=colours)
    right.set_xlabel("devices purged (engine, in process)")
    right.set_ylabel("peak RSS (MB)")
    right.set_title("Memory")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_storm(storm: Mapping[str, Any], path: Path) -> None:
    """Devices still able to send (not yet refused at their hub) over real service time, both phases."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, label in STORM_LABELS.items():
        curve = storm.get(name, {}).get("curve") or []
        if curve:
            xs, ys = zip(*curve, strict=True)
            ax.step([x / 60 for x in xs], ys, where="post", label=label)
    ax.set_xlabel("real service time since the events were queued (min)")
    ax.set_ylabel("devices still able to send")
    ax.set_title(f"Storm: {storm['events']:,} stolen events, {storm['hubs']} S1 hubs "
                 f"(F = {storm['timeCompression']:g})")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``python -m bench [--quick] [--sizes 1000,10000] [--symmetric-sizes 1000,10000]
[--memory-sizes 1000,100000] [--events 100] [--storm-events 10000] [--only storm|single] [--publish]``

Runs the group-purge comparison (engine as the product runs it, the engine's bulk path alone where the
product took import jobs, naive baseline), the symmetric-key group runs (judged against their throttle
floor), the memory runs, the single-event benchmark and the storm of single-device events against one
emulator process and one Azurite with blob (the import jobs' storage), then writes ``results.json``,
``report.md``, ``benchmark.png`` (and ``storm.png``) to ``bench/out/`` (``--publish`` also copies them to
``bench/results/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.run import BenchOptions, run, write_outputs
from emulator.iothub.jobtiming import DEFAULT_DEVICES_PER_SECOND, DEFAULT_START_SECONDS, check_number

OUT = Path(__file__).resolve().parent / "out"
RESULTS = Path(__file__).resolve().parent / "results"


def _sizes(text: str) -> tuple[int, ...]:
    values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, comma-separated")
    return values


def _knob(name: str, positive: bool) -> Any:
    def parse_one(text: str) -> float:
        try:
            return check_number(name, text, positive=positive)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse_one


def parse(argv: list[str] | None) -> tuple[BenchOptions, bool]:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true",
                   help="CI size: 1k devices, 1k symmetric-key, 1k/10k memory, 20 events")
    p.add_argument("--sizes", type=_sizes, help="group sizes (default 1000,10000)")
    p.add_argument("--symmetric-sizes", type=_sizes,
                   help="symmetric-key group sizes (default 1000,10000; quick 1000)")
    p.add_argument("--memory-sizes", type=_sizes, help="memory run sizes (default 1000,100000)")
    p.add_argument("--naive-sample", type=int, default=1000, help="naive baseline devices measured per size")
    p.add_argument("--compression", type=float, default=10.0, help="throttle time-compression factor F")
    p.add_argument("--action", choices=("disable", "delete"), default="disable")
    p.add_argument("--import-job-threshold", type=int,
                   help="GROUP_IMPORT_JOB_THRESHOLD for the engine (default: the product's, 1000 per hub)")
    p.add_argument("--job-rate", type=_knob("--job-rate", True), default=DEFAULT_DEVICES_PER_SECOND,
                   help="emulator import/export jobs: devices per second, real-service time (default ~278)")
    p.add_argument("--job-start-latency", type=_knob("--job-start-latency", False),
                   default=DEFAULT_START_SECONDS,
                   help="seconds a job waits before it runs, real-service time (default 10)")
    p.add_argument("--events", type=int, help="single-device events per phase (default 100; quick 20)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="injected latency for single events")
    p.add_argument("--skip-single", action="store_true", help="skip the single-event benchmark")
    p.add_argument("--storm-events", type=int,
                   help="stolen events per phase of the storm benchmark (default 10000; quick 300)")
    p.add_argument("--storm-compression", type=_knob("--storm-compression", True), default=1.0,
                   help="time-compression factor F of the storm (default 1: real time); below 1 the services "
                        "run slower, standing in for a scaled-out host (docs/benchmarks.md, 'Storm')")
    p.add_argument("--skip-storm", action="store_true", help="skip the storm benchmark")
    p.add_argument("--only", choices=("storm", "single"), help="run only this benchmark")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--publish", action="store_true", help="also copy the outputs to bench/results/")
    args = p.parse_args(argv)
    quick = args.quick
    options = BenchOptions(
        sizes=args.sizes or ((1000,) if quick else (1000, 10000)),
        symmetric_sizes=args.symmetric_sizes or ((1000,) if quick else (1000, 10000)),
        memory_sizes=args.memory_sizes or ((1000, 10000) if quick else (1000, 100000)),
        naive_sample=args.naive_sample,
        compression=args.compression,
        action=args.action,
        events=args.events or (20 if quick else 100),
        latency_ms=args.latency_ms,
        import_job_threshold=args.import_job_threshold,
        job_rate=args.job_rate,
        job_start=args.job_start_latency,
        single=not args.skip_single,
        storm_events=0 if args.skip_storm else (args.storm_events or (300 if quick else 10000)),
        storm_compression=args.storm_compression,
        only=args.only,
        out=args.out,
        command=" ".join(["python -m bench", *(argv or sys.argv[1:])]),
    )
    return options, args.publish


def main(argv: list[str] | None = None) -> int:
    options, publish = parse(argv)
    results = run(options, log=lambda line: print(line, flush=True))
    paths = write_outputs(results, options.out)
    if publish:
        write_outputs(results, RESULTS)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    for verdict in results["verdicts"]:
        print(f"{'MET ' if verdict['met'] else 'MISS'} {verdict['name']}: {verdict['text']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

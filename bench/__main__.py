"""Run every `bench/bench_<area>.py` (`run(quick) -> {figure: value}`), print a table, save the JSON.

`python -m bench [--quick] [--only pipeline,risk]`. With --only, figures of areas not run are kept
from the previous latest.json so the file always holds the newest figure of every benchmark.

Ctrl-C or SIGTERM stops the run: the running benchmark unwinds (its own cleanup stops its servers and
processes), then anything of this run still alive is stopped (`bench/stack.py`: every server's data
lives under one run directory), latest.json is left as it was, and the exit code is 128 + the signal.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

from bench.stack import run_directory

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"


class Stopped(KeyboardInterrupt):
    """Raised where the run is when SIGINT or SIGTERM arrives; a KeyboardInterrupt, so that asyncio and
    every `finally` unwind exactly as they do for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_stop_signal(signum, frame) -> None:
    # Once: a second Ctrl-C must not cut the cleanup short (that is how servers were left running).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signum)


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="short runs (smoke check of the benchmarks)")
    ap.add_argument("--only", default="", help="comma-separated areas (default: all)")
    args = ap.parse_args(argv)
    areas = [a for a in args.only.split(",") if a] or discover()
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    try:
        with run_directory():
            return _run(areas, args.quick, keep_others=bool(args.only))
    except Stopped as exc:
        print(
            f"\nstopped by {signal.Signals(exc.signum).name}: the servers of this run are stopped; "
            f"{RESULTS.relative_to(HERE.parent)} is unchanged",
            file=sys.stderr,
            flush=True,
        )
        return 128 + exc.signum
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run(areas: list[str], quick: bool, keep_others: bool) -> int:
    figures: dict[str, float] = {}
    failures: list[str] = []
    if keep_others and RESULTS.exists():
        figures.update(json.loads(RESULTS.read_text()).get("figures", {}))
    for area in areas:
        print(f"== bench {area} ...", flush=True)
        started = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.bench_{area}")
            got = mod.run(quick=quick)
        except Exception:
            traceback.print_exc()
            failures.append(area)
            continue
        for name, value in got.items():
            figures[name] = round(float(value), 4)
            print(f"   {name:<40} {figures[name]:>14,.4f}", flush=True)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "figures": figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print()
    print(f"{'figure':<42}{'value':>16}")
    print("-" * 58)
    for name in sorted(figures):
        print(f"{name:<42}{figures[name]:>16,.4f}")
    print(f"\nmachine: {result['machine']}  -> {RESULTS.relative_to(HERE.parent)}")
    if failures:
        print(f"FAILED benchmarks: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

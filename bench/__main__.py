"""Run every `bench/bench_<area>.py` (`run(quick) -> {figure: value}`), print a table, save the JSON.

`python -m bench [--quick] [--only pipeline,risk]`. With --only, figures of areas not run are kept
from the previous latest.json so the file always holds the newest figure of every benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"


def discover() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="short runs (smoke check of the benchmarks)")
    ap.add_argument("--only", default="", help="comma-separated areas (default: all)")
    args = ap.parse_args(argv)
    areas = [a for a in args.only.split(",") if a] or discover()
    figures: dict[str, float] = {}
    failures: list[str] = []
    if args.only and RESULTS.exists():
        figures.update(json.loads(RESULTS.read_text()).get("figures", {}))
    for area in areas:
        print(f"== bench {area} ...", flush=True)
        started = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.bench_{area}")
            got = mod.run(quick=args.quick)
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

"""`python3 -m scripts.check_dod_daily --fail-on-violation`: the last day's DoD violations (runbook daily triage).

The last day is the last complete UTC day (yesterday) unless `--date` says otherwise. Exit 1 on any
violation with `--fail-on-violation`, 2 when no database can be reached.
"""

import argparse
import sys

from services.ops_api.tooling import run_check


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="print the DoD v1 violations of the last UTC day")
    p.add_argument("--fail-on-violation", action="store_true", help="exit 1 if there is any violation")
    p.add_argument("--date", default=None, help="YYYY-MM-DD or 'today' (default: yesterday, UTC)")
    p.add_argument("--config", default=None)
    a = p.parse_args(argv)
    return run_check(a.config, a.date, a.fail_on_violation)


if __name__ == "__main__":
    sys.exit(main())

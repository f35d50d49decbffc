"""`python3 -m scripts.generate_dod_report --days 7`: DoD v1 daily reports from Postgres (runbook SEV-1 step 3).

Writes `artifacts/reports/dod/daily/<YYYY-MM-DD>.json` per day and `artifacts/reports/dod/dod_v1_summary.md`,
and stores the reports in Postgres (`dod_reports`). The database: `DATABASE_URL`, else the running local
suite (`artifacts/run/suite.json`), else `database.url` in the config.
"""

import argparse
import sys

from services.ops_api.tooling import run_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="generate the DoD v1 daily reports and summary")
    p.add_argument("--days", type=int, default=7, help="how many UTC days, ending today (default 7)")
    p.add_argument("--until", default=None, help="last day: YYYY-MM-DD or 'today' (default today)")
    p.add_argument("--config", default=None)
    a = p.parse_args(argv)
    return run_report(a.config, a.days, a.until or "today")


if __name__ == "__main__":
    sys.exit(main())

"""`bnml dod report --days 7` and `bnml dod check`: the DoD v1 reports, computed from Postgres."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("dod", help="DoD v1 daily reports (from Postgres)")
    d = p.add_subparsers(dest="dod_action", required=True)
    r = d.add_parser("report", help="write artifacts/reports/dod/daily/*.json and dod_v1_summary.md")
    r.add_argument("--days", type=int, default=7)
    r.add_argument("--until", default="today", help="last day: YYYY-MM-DD or 'today'")
    r.set_defaults(func=_report)
    c = d.add_parser("check", help="print the last day's violations; exit 1 on any")
    c.add_argument("--date", default=None, help="YYYY-MM-DD or 'today' (default: yesterday, UTC)")
    c.set_defaults(func=_check)


def _report(args) -> int:
    from services.ops_api.tooling import run_report

    return run_report(args.config, args.days, args.until)


def _check(args) -> int:
    from services.ops_api.tooling import run_check

    return run_check(args.config, args.date, True)

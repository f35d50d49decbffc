"""What the operator commands share: finding the database, DoD report/check runs (used by scripts and bnml)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from libs.common.errors import ConfigurationError
from libs.common.settings import BotSettings, load_settings, mask_url


class NoDatabase(Exception):
    """No database could be found; the message is one line."""


def resolve_database_url(settings: BotSettings | None = None) -> str:
    """`DATABASE_URL`, else the running local suite's `artifacts/run/suite.json`, else the config."""
    import os

    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    try:
        from libs.common.suite import suite_info

        url = suite_info().get("database_url")
    except Exception:
        url = None
    if url:
        return url
    if settings is not None and settings.database.url.get_secret_value():
        return settings.database.url.get_secret_value()
    raise NoDatabase(
        "no database: set DATABASE_URL, start the suite (`make run`), or set database.url in the config"
    )


def load(config: str | None) -> BotSettings:
    try:
        return load_settings(config)
    except ConfigurationError as exc:
        raise NoDatabase(f"configuration error: {exc}") from None


@dataclass
class DodRun:
    reports: list
    files: list[Path]
    database: str


def _progress(i: int, n: int, report) -> None:
    print(
        f"[{i}/{n}] {report.day.isoformat()} {report.status.upper()}"
        + (f" ({len(report.violations)} violation(s))" if report.violations else ""),
        file=sys.stderr,
        flush=True,
    )


async def _connect(url: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NoDatabase(f"database at {mask_url(url)} unreachable: {first}") from None


async def generate(
    settings: BotSettings,
    url: str,
    days: int,
    *,
    last_day: date | None = None,
    out_dir: Path | None = None,
    now: datetime | None = None,
    progress: bool = True,
    summary: bool = True,
) -> DodRun:
    """Compute `days` daily reports from Postgres, store them there and write the files."""
    from services.ops_api.dod_store import build_reports, store_reports, thresholds_from, write_files

    now = now or datetime.now(UTC)  # wall time by design: a CLI run (`bnml dod`) has no runtime clock
    conn = await _connect(url)
    try:
        reports = await build_reports(
            conn, days, thresholds_from(settings), now, last_day, _progress if progress else None
        )
        await store_reports(conn, reports, now)
    finally:
        await conn.close()
    out = out_dir or Path(settings.monitoring.dod.reports_dir)
    files = write_files(reports, out, now, summary=summary)
    return DodRun(reports, files, mask_url(url))


def parse_day(value: str | None, now: datetime | None = None) -> date:
    """`YYYY-MM-DD`, `today`, or (default) yesterday: the last complete UTC day."""
    now = now or datetime.now(UTC)  # wall time by design: the operator's "today"
    if not value:
        return (now - timedelta(days=1)).date()
    if value == "today":
        return now.date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise NoDatabase(f"--date: {value!r} is not YYYY-MM-DD or 'today'") from None


def run_report(config: str | None, days: int, last_day: str | None = None) -> int:
    try:
        settings = load(config)
        url = resolve_database_url(settings)
        if days < 1 or days > 366:
            raise NoDatabase("--days must be between 1 and 366")
        run = asyncio.run(generate(settings, url, days, last_day=parse_day(last_day) if last_day else None))
    except NoDatabase as exc:
        print(f"dod report: {exc}", file=sys.stderr)
        return 2
    passed = sum(1 for r in run.reports if r.passed)
    print(
        f"{passed}/{len(run.reports)} day(s) pass; wrote {run.files[-1]} and {len(run.files) - 1} daily report(s)"
        f" in {run.files[0].parent}; stored in Postgres ({run.database})"
    )
    return 0


def run_check(config: str | None, day: str | None, fail_on_violation: bool) -> int:
    try:
        settings = load(config)
        url = resolve_database_url(settings)
        d = parse_day(day)
        run = asyncio.run(generate(settings, url, 1, last_day=d, progress=False, summary=False))
        if day is None and run.reports[0].status == "no_data":
            # the suite first ran today: judge today so far rather than a day it did not exist
            print(
                f"note: no records for {d.isoformat()} (the suite first ran later); checking today so far",
                file=sys.stderr,
            )
            run = asyncio.run(
                generate(settings, url, 1, last_day=parse_day("today"), progress=False, summary=False)
            )
    except NoDatabase as exc:
        print(f"dod check: {exc}", file=sys.stderr)
        return 2
    report = run.reports[0]
    if report.violations:
        print(f"DoD {report.day.isoformat()}: {report.status.upper()}, {len(report.violations)} violation(s)")
        for v in report.violations:
            print(f"  - {v}")
    else:
        print(f"DoD {report.day.isoformat()}: PASS, no violation")
    print(f"report: {run.files[0]}")
    return 1 if (fail_on_violation and report.violations) else 0

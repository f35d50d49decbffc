"""The daily DoD report without any command: after each UTC day closes (plus a grace for late records),
ops_api computes that day's report, stores it (`dod_reports`), writes `<reports_dir>/daily/<day>.json` and
the summary, and, when `monitoring.dod.deliver` is on, sends the result through the alert channels
(a failed day as SEV-3, a passed one as INFO). Days missed while ops_api was down are caught up at start
(at most `CATCH_UP_DAYS`). The schedule is pure (`due_days`, `next_run`); `DodAutomation` is the shell.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

CATCH_UP_DAYS = 7


def due_days(
    now: datetime, first_seen: date | None, done: set[date], catch_up: int = CATCH_UP_DAYS
) -> list[date]:
    """Closed UTC days since the suite first ran that have no report made after they closed, oldest first."""
    if first_seen is None:
        return []
    yesterday = now.astimezone(UTC).date() - timedelta(days=1)
    start = max(first_seen, yesterday - timedelta(days=catch_up - 1))
    days = [start + timedelta(days=i) for i in range((yesterday - start).days + 1)]
    return [d for d in days if d not in done]


def next_run(now: datetime, grace_s: float) -> datetime:
    """The next UTC midnight + grace after `now`."""
    today = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC) + timedelta(seconds=grace_s)
    return today if now < today else today + timedelta(days=1)


def reports_path(reports_dir: str, artifacts_dir: str) -> Path:
    """`artifacts/...` (the default) lives under `storage.artifacts_dir`, like every other artefact."""
    p = Path(reports_dir)
    if not p.is_absolute() and p.parts and p.parts[0] == "artifacts":
        return Path(artifacts_dir).joinpath(*p.parts[1:])
    return p


def announcement(report: dict) -> tuple[str, str, str]:
    """(severity, title, detail) of one day's result for the alert channels."""
    day, violations = report["day"], report.get("violations") or []
    if report.get("status") == "no_data":
        return "INFO", f"DoD {day}: no data", "the suite did not run that day"
    if violations:
        return "SEV-3", f"DoD {day}: FAIL ({len(violations)} violation(s))", "; ".join(violations)[:1500]
    return "INFO", f"DoD {day}: PASS", "every DoD v1 check passed"


class DodAutomation:
    def __init__(self, rt, reports_dir: Path, grace_s: float, deliver: bool):
        self.rt, self.reports_dir, self.grace_s, self.deliver = rt, reports_dir, grace_s, deliver
        self.written: list[date] = []

    async def run(self) -> None:
        while True:
            try:
                await self.catch_up()
            except Exception as exc:  # the database may be restarting: the next round tries again
                self.rt.log.warning("automatic DoD report failed", error=str(exc))
                await asyncio.sleep(60.0)
                continue
            now = self.rt.clock.now()
            await asyncio.sleep(max(1.0, (next_run(now, self.grace_s) - now).total_seconds()))

    async def catch_up(self) -> list[date]:
        from services.ops_api.dod_store import build_reports, store_reports, thresholds_from, write_files

        now = self.rt.clock.now()
        async with self.rt.pool.connection() as conn:
            first = await (
                await conn.execute("SELECT min(minute) AS first FROM heartbeat_minutes")
            ).fetchone()
            done = {
                r["day"]
                for r in await (
                    await conn.execute(
                        "SELECT day FROM dod_reports WHERE generated_at >= ((day + 1)::timestamp AT TIME ZONE 'UTC')"
                    )
                ).fetchall()
            }
            first_day = first["first"].astimezone(UTC).date() if first and first["first"] else None
            days = due_days(now, first_day, done)
            for day in days:
                (report,) = await build_reports(conn, 1, thresholds_from(self.rt.settings), now, day)
                await store_reports(conn, [report], now)
                write_files([report], self.reports_dir, now, summary=False)
                self.rt.log.info(
                    "DoD report written",
                    day=day.isoformat(),
                    status=report.status,
                    violations=len(report.violations),
                )
                if self.deliver:
                    severity, title, detail = announcement(report.as_dict(now))
                    await self.rt.alert(severity, title, detail, dedup_key=f"ops_api:dod:{day.isoformat()}")
            if days:  # the summary over the last week, as the script writes it
                week = await build_reports(conn, 7, thresholds_from(self.rt.settings), now, days[-1])
                write_files(week, self.reports_dir, now, summary=True)
        self.written += days
        return days

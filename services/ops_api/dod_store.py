"""DoD shell: read one UTC day's facts from Postgres (aggregated in SQL), evaluate, store the reports."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from libs.common.contracts import SERVICES
from libs.common.settings import BotSettings
from services.ops_api.dod import (
    DayFacts,
    DayReport,
    Thresholds,
    day_bounds,
    evaluate,
    loss_breach,
    stale_union,
)

ERROR_STATUSES = ["REJECTED", "UNKNOWN"]


def thresholds_from(settings: BotSettings) -> Thresholds:
    d = settings.monitoring.dod
    budget = d.daily_loss_budget_usdt  # unset: risk's budget (resolved by BotSettings)
    if budget is None:
        raise ValueError("monitoring.dod.daily_loss_budget_usdt is unresolved: read it from a BotSettings")
    return Thresholds(
        heartbeat_coverage_min_pct=d.heartbeat_coverage_min_pct,
        stale_share_max_pct=d.stale_share_max_pct,
        stale_gap_max_s=d.stale_gap_max_s,
        order_error_rate_max_pct=d.order_error_rate_max_pct,
        alert_delivery_min_pct=d.alert_delivery_min_pct,
        daily_loss_budget_usdt=budget,
        halt_grace_s=d.halt_grace_s,
        backups_enabled=settings.storage.backup.enabled,
    )


async def first_heartbeat(conn) -> datetime | None:
    row = await (await conn.execute("SELECT min(minute) AS first FROM heartbeat_minutes")).fetchone()
    return _get(row, "first")


def _get(row, key):
    if row is None:
        return None
    return row[key] if isinstance(row, dict) else row[0]


async def _rows(conn, sql: str, params: tuple | dict = ()) -> list[dict]:
    cur = conn.cursor()
    await cur.execute(sql, params)
    cols = [d.name for d in cur.description]
    return [r if isinstance(r, dict) else dict(zip(cols, r, strict=True)) for r in await cur.fetchall()]


OPTIONAL_TABLES = ("exec_reconciliations", "risk_trading_state_events")


async def optional_tables(conn) -> set[str]:
    """Tables other areas' migrations add (read when present, so the report works on any schema version)."""
    out = set()
    for name in OPTIONAL_TABLES:
        row = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (name,))).fetchone()
        if _get(row, "present"):
            out.add(name)
    return out


async def day_facts(
    conn,
    day: date,
    t: Thresholds,
    now: datetime,
    first_seen: datetime | None,
    services: tuple[str, ...] = SERVICES,
    tables: set[str] | None = None,
) -> DayFacts:
    start, end = day_bounds(day)
    f = DayFacts(day=day, window_start=None, window_end=None, services=services)
    if first_seen is not None and first_seen < min(end, now):
        f.window_start, f.window_end = max(start, first_seen), min(end, now)
    grace = timedelta(seconds=t.halt_grace_s)

    (scalars,) = await _rows(
        conn,
        """
        SELECT
          (SELECT count(*) FROM orders WHERE created_at >= %(s)s AND created_at < %(e)s) AS orders_total,
          (SELECT count(*) FROM orders WHERE created_at >= %(s)s AND created_at < %(e)s
                                         AND status = ANY(%(err)s)) AS orders_error,
          (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - tick_ts)) * 1000
             FROM orders WHERE created_at >= %(s)s AND created_at < %(e)s AND tick_ts IS NOT NULL) AS p99_ms,
          (SELECT count(*) FROM orders WHERE created_at >= %(s)s AND created_at < %(e)s
                                         AND tick_ts IS NOT NULL) AS with_latency,
          (SELECT count(*) FROM backups WHERE started_at >= %(s)s AND started_at < %(e)s AND ok) AS backups_ok,
          (SELECT count(*) FROM backups WHERE started_at >= %(s)s AND started_at < %(e)s AND NOT ok) AS backups_failed,
          (SELECT count(*) FROM alert_deliveries WHERE ts >= %(s)s AND ts < %(e)s) AS deliveries_total,
          (SELECT count(*) FROM alert_deliveries WHERE ts >= %(s)s AND ts < %(e)s AND ok) AS deliveries_ok,
          (SELECT count(*) FROM incidents WHERE kind = 'journal_mismatch' AND opened_at < %(e)s
                                          AND (resolved_at IS NULL OR resolved_at >= %(e)s)) AS mismatches,
          (SELECT coalesce(sum(realized_pnl_usdt), 0) FROM fills WHERE ts >= %(s)s AND ts < %(e)s) AS pnl,
          (SELECT coalesce(sum(CASE WHEN fee_asset = split_part(symbol, '/', 2) OR fee_asset = 'USDT' THEN fee
                                    WHEN fee_asset = split_part(symbol, '/', 1) THEN fee * price ELSE 0 END), 0)
             FROM fills WHERE ts >= %(s)s AND ts < %(e)s) AS fees,
          (SELECT count(*) FROM fills WHERE ts >= %(s)s AND ts < %(e)s) AS trades,
          (SELECT count(*) FROM fills WHERE ts >= %(s)s AND ts < %(e)s AND realized_pnl_usdt > 0) AS wins,
          (SELECT count(*) FROM fills WHERE ts >= %(s)s AND ts < %(e)s AND realized_pnl_usdt <> 0) AS closes
    """,
        {"s": start, "e": end, "err": ERROR_STATUSES},
    )
    f.orders_total, f.orders_error = int(scalars["orders_total"]), int(scalars["orders_error"])
    f.tick_to_order_p99_ms = float(scalars["p99_ms"]) if scalars["p99_ms"] is not None else None
    f.orders_with_latency = int(scalars["with_latency"])
    f.backups_ok, f.backups_failed = int(scalars["backups_ok"]), int(scalars["backups_failed"])
    f.deliveries_total, f.deliveries_ok = int(scalars["deliveries_total"]), int(scalars["deliveries_ok"])
    f.unresolved_mismatches = int(scalars["mismatches"])
    if "exec_reconciliations" in (tables or set()):
        # the last reconciliation with the exchange before the day ended found mismatches: unresolved
        (rec,) = await _rows(
            conn,
            "SELECT count(*) AS n FROM (SELECT ok FROM exec_reconciliations WHERE ts < %s"
            " ORDER BY ts DESC, id DESC LIMIT 1) last WHERE NOT ok",
            (end,),
        )
        f.unresolved_mismatches += int(rec["n"])
    f.realized_pnl_usdt = Decimal(scalars["pnl"]).normalize() if scalars["pnl"] else Decimal("0")
    f.fees_usdt = (
        Decimal(scalars["fees"]).quantize(Decimal("0.00000001")).normalize()
        if scalars["fees"]
        else Decimal(0)
    )
    f.trades, f.winning_closes, f.closing_trades = (
        int(scalars["trades"]),
        int(scalars["wins"]),
        int(scalars["closes"]),
    )

    for r in await _rows(
        conn,
        "SELECT service, count(*) AS n FROM heartbeat_minutes WHERE minute >= %s AND minute < %s"
        " AND beats > 0 GROUP BY service",
        (start, end),
    ):
        f.covered_minutes[r["service"]] = int(r["n"])

    if f.window_start is not None and f.window_end is not None:
        initial = {
            r["symbol"]: r["status"]
            for r in await _rows(
                conn,
                "SELECT DISTINCT ON (symbol) symbol, status FROM market_status_events WHERE ts < %s"
                " ORDER BY symbol, ts DESC, id DESC",
                (f.window_start,),
            )
        }
        transitions = [
            (r["ts"], r["symbol"], r["status"])
            for r in await _rows(
                conn,
                "SELECT ts, symbol, status FROM market_status_events WHERE ts >= %s AND ts < %s ORDER BY ts, id",
                (f.window_start, f.window_end),
            )
        ]
        f.stale_intervals = stale_union(transitions, initial, f.window_start, f.window_end)

    pnls = [
        (r["ts"], Decimal(r["p"]))
        for r in await _rows(
            conn,
            "SELECT ts, realized_pnl_usdt AS p FROM fills WHERE ts >= %s AND ts < %s AND realized_pnl_usdt <> 0"
            " ORDER BY ts, id",
            (start, end),
        )
    ]
    f.loss_breach_at, f.max_drawdown_usdt = loss_breach(pnls, t.daily_loss_budget_usdt)
    f.max_drawdown_usdt = f.max_drawdown_usdt.normalize()
    if f.loss_breach_at is not None:
        lo, hi = f.loss_breach_at - grace, f.loss_breach_at + grace
        f.halt_events = [
            r["ts"]
            for r in await _rows(
                conn,
                """
            SELECT ts FROM trading_state_log WHERE state = 'HALTED' AND ts BETWEEN %(lo)s AND %(hi)s
            UNION ALL SELECT ts FROM breaker_log WHERE kind = 'tripped' AND effect = 'HALTED' AND ts BETWEEN %(lo)s AND %(hi)s
            UNION ALL SELECT ts FROM kill_switch_log WHERE action = 'engage' AND ts BETWEEN %(lo)s AND %(hi)s
            UNION ALL SELECT ts FROM kill_switch_audit WHERE action = 'engage' AND ts BETWEEN %(lo)s AND %(hi)s
        """
                + (
                    " UNION ALL SELECT ts FROM risk_trading_state_events WHERE state = 'HALTED'"
                    " AND ts BETWEEN %(lo)s AND %(hi)s"
                    if "risk_trading_state_events" in (tables or set())
                    else ""
                ),
                {"lo": lo, "hi": hi},
            )
        ]
        (row,) = await _rows(
            conn,
            "SELECT count(*) AS n FROM orders WHERE side = 'BUY' AND created_at > %s AND created_at < %s",
            (hi, end),
        )
        f.buys_after_breach = int(row["n"])

    f.sev1_incidents = [
        r["title"]
        for r in await _rows(
            conn,
            "SELECT title FROM incidents WHERE severity = 'SEV-1' AND opened_at >= %s AND opened_at < %s"
            " ORDER BY opened_at",
            (start, end),
        )
    ]
    f.breaker_trips = {
        r["breaker"]: int(r["n"])
        for r in await _rows(
            conn,
            "SELECT breaker, count(*) AS n FROM breaker_log WHERE kind = 'tripped' AND ts >= %s AND ts < %s"
            " GROUP BY breaker",
            (start, end),
        )
    }
    f.refusals = {
        r["reason"]: int(r["n"])
        for r in await _rows(
            conn,
            "SELECT reason, sum(n) AS n FROM refusal_minutes WHERE minute >= %s AND minute < %s GROUP BY reason",
            (start, end),
        )
    }
    return f


async def build_reports(
    conn, days: int, t: Thresholds, now: datetime, last_day: date | None = None, progress=None
) -> list[DayReport]:
    """Reports for `days` UTC days ending with `last_day` (default: today, partial), oldest first."""
    last_day = last_day or now.astimezone(UTC).date()
    first_seen = await first_heartbeat(conn)
    tables = await optional_tables(conn)
    out = []
    for i in range(days - 1, -1, -1):
        day = last_day - timedelta(days=i)
        report = evaluate(await day_facts(conn, day, t, now, first_seen, tables=tables), t)
        out.append(report)
        if progress:
            progress(len(out), days, report)
    return out


async def store_reports(conn, reports: list[DayReport], generated_at: datetime) -> None:
    for r in reports:
        await conn.execute(
            "INSERT INTO dod_reports (day, passed, report, generated_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (day) DO UPDATE SET passed = EXCLUDED.passed, report = EXCLUDED.report,"
            " generated_at = EXCLUDED.generated_at",
            (r.day, r.passed, json.dumps(r.as_dict(generated_at)), generated_at),
        )


def write_files(
    reports: list[DayReport], out_dir: Path, generated_at: datetime, summary: bool = True
) -> list[Path]:
    """`<out_dir>/daily/<YYYY-MM-DD>.json` per day and `<out_dir>/dod_v1_summary.md` (atomic writes)."""
    from services.ops_api.dod import summary_markdown

    daily = out_dir / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    written = []
    dicts = [r.as_dict(generated_at) for r in reports]
    for d in dicts:
        written.append(_atomic_write(daily / f"{d['day']}.json", json.dumps(d, indent=2) + "\n"))
    if summary:
        written.append(_atomic_write(out_dir / "dod_v1_summary.md", summary_markdown(dicts, generated_at)))
    return written


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path

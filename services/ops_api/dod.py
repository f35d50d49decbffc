"""DoD v1 (Definition of Done for running unattended): the daily checks as a pure core.

The shell (`dod_store.py`) reads one UTC day's facts from Postgres into `DayFacts`; `evaluate` turns them
into a `DayReport` (each check with its value, threshold and verdict, plus the figures). No I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

SCHEMA = "dod_v1"


@dataclass(frozen=True)
class Thresholds:
    heartbeat_coverage_min_pct: float = 99.0
    stale_share_max_pct: float = 1.0
    stale_gap_max_s: float = 300.0
    order_error_rate_max_pct: float = 2.0
    alert_delivery_min_pct: float = 99.0
    daily_loss_budget_usdt: Decimal = Decimal("200")
    halt_grace_s: float = 60.0
    backups_enabled: bool = True


@dataclass
class DayFacts:
    """What Postgres says about one UTC day, already aggregated."""

    day: date
    window_start: datetime | None  # None: the suite had never run by the end of this day
    window_end: datetime | None
    services: tuple[str, ...] = ()
    covered_minutes: dict[str, int] = field(default_factory=dict)
    stale_intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    orders_total: int = 0
    orders_error: int = 0
    sev1_incidents: list[str] = field(default_factory=list)
    realized_pnl_usdt: Decimal = Decimal("0")
    loss_breach_at: datetime | None = None
    halt_events: list[datetime] = field(default_factory=list)
    buys_after_breach: int = 0
    backups_ok: int = 0
    backups_failed: int = 0
    deliveries_total: int = 0
    deliveries_ok: int = 0
    unresolved_mismatches: int = 0
    fees_usdt: Decimal = Decimal("0")
    trades: int = 0
    winning_closes: int = 0
    closing_trades: int = 0
    max_drawdown_usdt: Decimal = Decimal("0")
    breaker_trips: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    tick_to_order_p99_ms: float | None = None
    orders_with_latency: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not applicable (nothing to judge)
    value: float | str | None
    threshold: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class DayReport:
    day: date
    status: str  # pass | fail | no_data
    checks: tuple[Check, ...]
    figures: dict[str, Any]
    window: tuple[datetime | None, datetime | None]

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def violations(self) -> list[str]:
        out = [f"{c.name}: {c.detail}" for c in self.checks if c.passed is False]
        if self.status == "no_data":
            out.insert(0, f"no records for {self.day.isoformat()}: the suite was not running")
        return out

    def as_dict(self, generated_at: datetime | None = None) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "day": self.day.isoformat(),
            "status": self.status,
            "passed": self.passed,
            "generated_at": generated_at.isoformat() if generated_at else None,
            "window": {"start": _iso(self.window[0]), "end": _iso(self.window[1])},
            "violations": self.violations,
            "checks": {c.name: c.as_dict() for c in self.checks},
            "figures": self.figures,
        }


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def minutes_in(start: datetime, end: datetime) -> int:
    """Minute buckets [floor(start), end) touches: what full heartbeat coverage of the window would fill."""
    if end <= start:
        return 0
    return math.ceil(end.timestamp() / 60) - math.floor(start.timestamp() / 60)


def stale_union(
    transitions: Iterable[tuple[datetime, str, str]], initial: dict[str, str], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Intervals inside [start, end) when at least one symbol was stale.

    `transitions` are (ts, symbol, status) sorted by ts, all inside the window; `initial` is each symbol's
    status at `start` (its last transition before it).
    """
    state = dict(initial)
    stale_now = {s for s, st in state.items() if st == "stale"}
    out: list[tuple[datetime, datetime]] = []
    opened = start if stale_now else None
    for ts, symbol, status in transitions:
        ts = min(max(ts, start), end)
        if status == "stale":
            stale_now.add(symbol)
        else:
            stale_now.discard(symbol)
        if stale_now and opened is None:
            opened = ts
        elif not stale_now and opened is not None:
            if ts > opened:
                out.append((opened, ts))
            opened = None
    if opened is not None and end > opened:
        out.append((opened, end))
    return out


def loss_breach(pnls: Iterable[tuple[datetime, Decimal]], budget: Decimal) -> tuple[datetime | None, Decimal]:
    """First instant the day's cumulative realized P&L fell below -budget, and the max drawdown of that curve."""
    cum = peak = Decimal("0")
    drawdown = Decimal("0")
    breach: datetime | None = None
    for ts, pnl in pnls:
        cum += pnl
        peak = max(peak, cum)
        drawdown = max(drawdown, peak - cum)
        if breach is None and cum < -budget:
            breach = ts
    return breach, drawdown


def _pct(num: float, den: float) -> float:
    return round(100.0 * num / den, 4) if den else 0.0


def evaluate(f: DayFacts, t: Thresholds) -> DayReport:
    """Every DoD v1 check for one day. A check with nothing to judge is `None` (n/a), never a silent pass."""
    figures = {
        "realized_pnl_usdt": str(f.realized_pnl_usdt),
        "fees_usdt": str(f.fees_usdt),
        "trades": f.trades,
        "win_rate_pct": _pct(f.winning_closes, f.closing_trades) if f.closing_trades else None,
        "max_drawdown_usdt": str(f.max_drawdown_usdt),
        "breaker_trips": dict(sorted(f.breaker_trips.items())),
        "refusals_by_reason": dict(sorted(f.refusals.items(), key=lambda kv: -kv[1])),
        "tick_to_order_p99_ms": None if f.tick_to_order_p99_ms is None else round(f.tick_to_order_p99_ms, 3),
        "orders": f.orders_total,
        "orders_error": f.orders_error,
        "alerts_delivered": f.deliveries_ok,
        "alert_deliveries": f.deliveries_total,
        "backups_ok": f.backups_ok,
        "backups_failed": f.backups_failed,
    }
    if f.window_start is None or f.window_end is None or f.window_end <= f.window_start:
        return DayReport(f.day, "no_data", (), figures, (f.window_start, f.window_end))

    checks: list[Check] = []
    expected = minutes_in(f.window_start, f.window_end)
    for svc in f.services:
        covered = min(f.covered_minutes.get(svc, 0), expected)
        pct = _pct(covered, expected)
        ok = pct >= t.heartbeat_coverage_min_pct
        checks.append(
            Check(
                f"heartbeat_coverage.{svc}",
                ok,
                pct,
                f">= {t.heartbeat_coverage_min_pct} %",
                f"{svc} heartbeats in {covered}/{expected} minutes ({pct} %)",
            )
        )

    window_s = (f.window_end - f.window_start).total_seconds()
    stale_s = sum((b - a).total_seconds() for a, b in f.stale_intervals)
    share = _pct(stale_s, window_s)
    checks.append(
        Check(
            "stale_share",
            share <= t.stale_share_max_pct,
            share,
            f"<= {t.stale_share_max_pct} %",
            f"market data stale {stale_s:.0f} s of {window_s:.0f} s ({share} %)",
        )
    )
    longest = max(((b - a).total_seconds() for a, b in f.stale_intervals), default=0.0)
    checks.append(
        Check(
            "stale_gap",
            longest <= t.stale_gap_max_s,
            round(longest, 3),
            f"<= {t.stale_gap_max_s} s",
            f"longest stale stretch {longest:.0f} s",
        )
    )

    if f.orders_total:
        rate = _pct(f.orders_error, f.orders_total)
        checks.append(
            Check(
                "order_error_rate",
                rate <= t.order_error_rate_max_pct,
                rate,
                f"<= {t.order_error_rate_max_pct} %",
                f"{f.orders_error} of {f.orders_total} orders rejected or unknown ({rate} %)",
            )
        )
    else:
        checks.append(
            Check("order_error_rate", None, None, f"<= {t.order_error_rate_max_pct} %", "no orders")
        )

    checks.append(
        Check(
            "no_sev1_incident",
            not f.sev1_incidents,
            len(f.sev1_incidents),
            "0",
            "SEV-1: " + "; ".join(f.sev1_incidents[:5]) if f.sev1_incidents else "none",
        )
    )

    if f.loss_breach_at is None:
        checks.append(
            Check(
                "daily_loss_budget",
                True,
                str(f.realized_pnl_usdt),
                f">= -{t.daily_loss_budget_usdt} USDT",
                "within budget",
            )
        )
    else:
        lo = f.loss_breach_at - timedelta(seconds=t.halt_grace_s)
        hi = f.loss_breach_at + timedelta(seconds=t.halt_grace_s)
        halted = any(lo <= h <= hi for h in f.halt_events)
        ok = halted and f.buys_after_breach == 0
        why = (
            "budget breached; trading halted in time"
            if ok
            else f"budget breached at {f.loss_breach_at.isoformat()} and "
            + (
                "no halt within the grace period"
                if not halted
                else f"{f.buys_after_breach} buy order(s) after the halt"
            )
        )
        checks.append(
            Check(
                "daily_loss_budget",
                ok,
                str(f.realized_pnl_usdt),
                f">= -{t.daily_loss_budget_usdt} USDT or halted",
                why,
            )
        )

    if t.backups_enabled:
        checks.append(
            Check(
                "backup_done",
                f.backups_ok >= 1,
                f.backups_ok,
                ">= 1",
                f"{f.backups_ok} successful, {f.backups_failed} failed backup(s)",
            )
        )
    else:
        checks.append(
            Check("backup_done", None, f.backups_ok, ">= 1 (backups off)", "storage.backup.enabled is off")
        )

    if f.deliveries_total:
        rate = _pct(f.deliveries_ok, f.deliveries_total)
        checks.append(
            Check(
                "alert_delivery",
                rate >= t.alert_delivery_min_pct,
                rate,
                f">= {t.alert_delivery_min_pct} %",
                f"{f.deliveries_ok} of {f.deliveries_total} deliveries succeeded ({rate} %)",
            )
        )
    else:
        checks.append(
            Check("alert_delivery", None, None, f">= {t.alert_delivery_min_pct} %", "nothing to deliver")
        )

    checks.append(
        Check(
            "no_unresolved_mismatch",
            f.unresolved_mismatches == 0,
            f.unresolved_mismatches,
            "0",
            f"{f.unresolved_mismatches} unresolved journal/exchange mismatch(es)",
        )
    )

    status = "fail" if any(c.passed is False for c in checks) else "pass"
    return DayReport(f.day, status, tuple(checks), figures, (f.window_start, f.window_end))


def summary_markdown(reports: list[dict[str, Any]], generated_at: datetime) -> str:
    """`artifacts/reports/dod/dod_v1_summary.md` from the daily report dicts (oldest first)."""
    lines = [
        "# DoD v1 summary",
        "",
        f"Generated {generated_at.isoformat()} from Postgres; "
        f"{len(reports)} day(s). One JSON per day in `daily/`.",
        "",
        "| day | status | violations | realized P&L (USDT) | fees | trades | win rate % | max DD | p99 tick->order ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        fig = r["figures"]
        lines.append(
            f"| {r['day']} | {r['status'].upper()} | {len(r['violations'])} | {fig['realized_pnl_usdt']} | "
            f"{fig['fees_usdt']} | {fig['trades']} | {fig['win_rate_pct'] if fig['win_rate_pct'] is not None else '-'} | "
            f"{fig['max_drawdown_usdt']} | {fig['tick_to_order_p99_ms'] if fig['tick_to_order_p99_ms'] is not None else '-'} |"
        )
    passed = sum(1 for r in reports if r["status"] == "pass")
    lines += ["", f"**{passed}/{len(reports)} day(s) pass.**", ""]
    for r in reports:
        if r["violations"]:
            lines.append(f"## {r['day']}: violations")
            lines += [f"- {v}" for v in r["violations"]]
            lines.append("")
    return "\n".join(lines) + "\n"

"""Breakers (pure): each looks at numbers and a time and returns allowed / reason / until. Nothing changes state.

A breaker that should latch (a loss budget until its window rolls over, volatility for a minimum hold,
a cooldown) gets its previous trip (`prev`) and decides from it; the manager (`state.py`) applies results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class BreakerResult:
    allowed: bool
    reason: str = ""
    until: datetime | None = None


OK = BreakerResult(True)


@dataclass(frozen=True)
class Prev:
    """What the manager remembers of a breaker in force."""

    since: datetime
    until: datetime | None = None


# -- calendar windows ----------------------------------------------------------------------------
def day_window(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the calendar day containing `now` in zone `tz`, as aware datetimes."""
    local = now.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (
        (start + timedelta(days=1)).replace(tzinfo=None).replace(tzinfo=tz)
    )  # wall-clock midnight (DST-safe)
    return start, end


def week_window(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the calendar week (Monday 00:00 local) containing `now`."""
    day_start, _ = day_window(now, tz)
    start = (day_start.replace(tzinfo=None) - timedelta(days=day_start.weekday())).replace(tzinfo=tz)
    end = (start.replace(tzinfo=None) + timedelta(days=7)).replace(tzinfo=tz)
    return start, end


# -- the breakers --------------------------------------------------------------------------------
def loss_budget(
    name: str, realized: Decimal, budget: Decimal, window_end: datetime, now: datetime, prev: Prev | None
) -> BreakerResult:
    """Realized P&L in the window at or below -budget trips; it latches until the window rolls over."""
    if prev is not None and prev.until is not None and now < prev.until:
        return BreakerResult(
            False,
            f"{name} realized {realized:.2f} USDT; budget {budget} spent until the window rolls over",
            prev.until,
        )
    if realized <= -budget:
        return BreakerResult(False, f"{name} realized {realized:.2f} USDT <= -{budget} budget", window_end)
    return OK


def drawdown(equity: Decimal, peak: Decimal, max_pct: float, prev: Prev | None) -> BreakerResult:
    """Equity this far below its peak trips; it holds until the drawdown is back under the limit.

    (It is HALTED by default, and HALTED needs an operator release whatever the breaker does.)"""
    if peak <= 0:
        return OK
    dd = float((peak - equity) / peak * 100)
    if dd >= max_pct:
        return BreakerResult(False, f"drawdown {dd:.2f}% >= {max_pct}% from peak {peak:.2f} USDT")
    return OK


def volatility(
    ratio: float | None, trip: float, clear: float, min_hold_s: float, now: datetime, prev: Prev | None
) -> BreakerResult:
    """Short/long realized vol at or above `trip` trips; it clears only below `clear` and after `min_hold_s`."""
    if prev is None:
        if ratio is not None and ratio >= trip:
            return BreakerResult(
                False, f"volatility ratio {ratio:.2f} >= {trip}", now + timedelta(seconds=min_hold_s)
            )
        return OK
    hold_until = prev.since + timedelta(seconds=min_hold_s)
    if now < hold_until:
        return BreakerResult(False, f"volatility ratio {_fmt(ratio)} (minimum hold)", hold_until)
    if ratio is None or ratio >= clear:
        return BreakerResult(False, f"volatility ratio {_fmt(ratio)} not yet below {clear}")
    return OK


def drift(detected: bool, reason: str) -> BreakerResult:
    return (
        BreakerResult(False, f"drift detected: {reason}" if reason else "drift detected") if detected else OK
    )


def stale_data(
    last_tick_at: datetime | None, status_stale: bool, status_reason: str, now: datetime, stale_after_s: float
) -> BreakerResult:
    """No tick yet, no tick for `stale_after_s`, or market_data itself says stale."""
    if last_tick_at is None:
        return BreakerResult(False, "no market data yet")
    age = (now - last_tick_at).total_seconds()
    if age > stale_after_s:
        return BreakerResult(False, f"last tick {age:.1f}s ago > {stale_after_s}s")
    if status_stale:
        return BreakerResult(
            False,
            f"market_data reports stale: {status_reason}" if status_reason else "market_data reports stale",
        )
    return OK


def heartbeat_missing(
    service: str, last_seen: datetime | None, started_at: datetime, now: datetime, timeout_s: float
) -> BreakerResult:
    """Silent for `timeout_s` (counted from risk's own start when never heard: a grace period)."""
    ref = last_seen or started_at
    age = (now - ref).total_seconds()
    if age > timeout_s:
        heard = f"{age:.1f}s ago" if last_seen else "never"
        return BreakerResult(False, f"no heartbeat from {service} ({heard})")
    return OK


def cooldown(what: str, last_at: datetime | None, duration_s: float, now: datetime) -> BreakerResult:
    if last_at is None or duration_s <= 0:
        return OK
    until = last_at + timedelta(seconds=duration_s)
    if now < until:
        return BreakerResult(False, f"cooldown after {what}", until)
    return OK


def loss_streak(
    streak: int, limit: int, last_loss_at: datetime | None, lock_s: float, now: datetime
) -> BreakerResult:
    if streak < limit or last_loss_at is None:
        return OK
    until = last_loss_at + timedelta(seconds=lock_s)
    if now < until:
        return BreakerResult(False, f"{streak} losing trades in a row (limit {limit})", until)
    return OK


def order_loop(would_be_orders: int, limit: int, window_s: float) -> BreakerResult:
    """Too many order attempts in the window: a loop (HALTED by default, and HALTED waits for an operator)."""
    if would_be_orders >= limit:
        return BreakerResult(False, f"{would_be_orders} order attempts in {window_s:.0f}s >= {limit}")
    return OK


def _fmt(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2f}"

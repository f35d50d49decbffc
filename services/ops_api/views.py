"""The operator's money view over HTTP (viewer token): balances, positions, profit, performance per symbol,
P&L per day/week/month and round trips, each computed in SQL over the journal (`ledger_sql`).

Money stays a string (exact Decimal); every time is UTC; invalid input gets a 422 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from services.ops_api import ledger_sql

SYMBOL = r"^[A-Z0-9]+/?[A-Z0-9]+$"
Fetch = Callable[[str, dict], Awaitable[list[dict]]]


def parse_since(value: str | None) -> datetime | None:
    """`YYYY-MM-DD` (that UTC midnight) or an ISO 8601 time with a timezone; anything else is refused."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(
            422, f"since: {value[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        raise HTTPException(422, "since: needs a timezone (e.g. 2026-01-01T00:00:00Z) or a plain date")
    if not 2000 <= when.year <= 9000:
        raise HTTPException(422, "since: year out of range (2000-9000)")
    return when


def period_end(until: date | None, now: datetime) -> datetime:
    day = until or now.date()
    if not 2000 <= day.year <= 9000:
        raise HTTPException(422, "until: year out of range (2000-9000)")
    return datetime.combine(day, time(12), tzinfo=UTC)  # any time inside the day: the SQL truncates it


def win_rate(wins: int, closed: int) -> str | None:
    """Share of closed trades that made money, 0-1 (a string like every figure here), None without trades."""
    return str((Decimal(wins) / Decimal(closed)).quantize(Decimal("0.0001"))) if closed else None


def journal_router(
    viewer: Callable, fetch: Fetch, now: Callable[[], datetime], dust_usdt: Decimal
) -> APIRouter:
    """The read endpoints; `viewer` is app.py's auth dependency, `fetch(sql, params)` its query helper."""
    r = APIRouter(tags=["account and performance"])

    @r.get("/balance", summary="Balances per asset (free, locked), valued in USDT at the last price")
    async def balance(_: str = Depends(viewer)) -> dict:
        rows = await fetch(ledger_sql.BALANCES, {})
        priced = [Decimal(x["value_usdt"]) for x in rows if x["value_usdt"] is not None]
        unpriced = [x["asset"] for x in rows if x["value_usdt"] is None and Decimal(x["total"]) > 0]
        return {
            "assets": rows,
            "total_usdt": str(sum(priced, Decimal(0))),
            "unpriced": unpriced,
            "complete": not unpriced,
            "generated_at": now().isoformat(),
        }

    @r.get(
        "/positions", summary="Open positions: quantity, average cost, last price, unrealized P&L, exposure"
    )
    async def positions(
        _: str = Depends(viewer),
        symbol: str | None = Query(None, min_length=3, max_length=32, pattern=SYMBOL),
    ) -> dict:
        rows = await fetch(ledger_sql.POSITIONS, {"symbol": symbol})
        unpriced = [x["symbol"] for x in rows if x["unrealized_pnl_usdt"] is None]
        return {
            "positions": rows,
            "total_exposure_usdt": str(
                sum((Decimal(x["exposure_usdt"]) for x in rows if x["exposure_usdt"] is not None), Decimal(0))
            ),
            "total_unrealized_pnl_usdt": str(
                sum(
                    (Decimal(x["unrealized_pnl_usdt"]) for x in rows if x["unrealized_pnl_usdt"] is not None),
                    Decimal(0),
                )
            ),
            "unpriced": unpriced,
            "generated_at": now().isoformat(),
        }

    @r.get("/profit", summary="Realized and unrealized P&L, fees, win rate, best/worst trade, max drawdown")
    async def profit(
        _: str = Depends(viewer),
        since: str | None = Query(None, max_length=40, description="YYYY-MM-DD or ISO 8601 with timezone"),
    ) -> dict:
        when = parse_since(since)
        (row,) = await fetch(ledger_sql.PROFIT, {"since": when, "dust": dust_usdt})
        (unreal,) = await fetch(ledger_sql.UNREALIZED, {})
        realized, unrealized = Decimal(row["realized_pnl_usdt"]), Decimal(unreal["unrealized_pnl_usdt"])
        closed = int(row["trades_closed"])
        return {
            **row,
            "since": when.isoformat() if when else None,
            "unrealized_pnl_usdt": str(unrealized),
            "total_pnl_usdt": str(realized + unrealized),
            "open_positions": unreal["open_positions"],
            "unpriced_positions": unreal["unpriced_positions"],
            "win_rate": win_rate(int(row["wins"]), closed),
            "generated_at": now().isoformat(),
        }

    @r.get("/performance", summary="P&L, fees, fills and trades per symbol")
    async def performance(_: str = Depends(viewer), since: str | None = Query(None, max_length=40)) -> dict:
        when = parse_since(since)
        rows = await fetch(ledger_sql.PERFORMANCE, {"since": when, "dust": dust_usdt})
        return {
            "symbols": rows,
            "since": when.isoformat() if when else None,
            "generated_at": now().isoformat(),
        }

    async def periods(unit: str, count: int, until: date | None) -> dict:
        end = period_end(until, now())
        rows = await fetch(
            ledger_sql.PERIODS, {"unit": unit, "count": count, "until": end, "dust": dust_usdt}
        )
        return {
            "unit": unit,
            "count": count,
            "periods": rows,
            "realized_pnl_usdt": str(sum((Decimal(x["realized_pnl_usdt"]) for x in rows), Decimal(0))),
            "fees_usdt": str(sum((Decimal(x["fees_usdt"]) for x in rows), Decimal(0))),
            "generated_at": now().isoformat(),
        }

    @r.get("/daily", summary="Realized P&L, fees, fills and trades closed per UTC day (empty days included)")
    async def daily(
        _: str = Depends(viewer),
        count: int = Query(7, ge=1, le=366),
        until: date | None = Query(None, description="last day shown (default today)"),
    ) -> dict:
        return await periods("day", count, until)

    @r.get("/weekly", summary="The same per ISO week (Monday to Sunday, UTC)")
    async def weekly(
        _: str = Depends(viewer),
        count: int = Query(4, ge=1, le=156),
        until: date | None = Query(None, description="a day of the last week shown"),
    ) -> dict:
        return await periods("week", count, until)

    @r.get("/monthly", summary="The same per calendar month (UTC)")
    async def monthly(
        _: str = Depends(viewer),
        count: int = Query(6, ge=1, le=120),
        until: date | None = Query(None, description="a day of the last month shown"),
    ) -> dict:
        return await periods("month", count, until)

    @r.get("/trades", summary="Round trips built from fills (flat -> position -> flat), newest first")
    async def trades(
        _: str = Depends(viewer),
        symbol: str | None = Query(None, min_length=3, max_length=32, pattern=SYMBOL),
        state: Literal["open", "closed", "all"] = Query("all"),
        since: str | None = Query(None, max_length=40),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict:
        when = parse_since(since)
        rows = await fetch(
            ledger_sql.TRADES,
            {
                "symbol": symbol,
                "state": state,
                "since": when,
                "dust": dust_usdt,
                "limit": limit + 1,
                "offset": offset,
            },
        )
        more = len(rows) > limit
        return {
            "items": rows[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    @r.get(
        "/refusals", summary="Refused verdicts per reason and breaker trips per breaker over the last hours"
    )
    async def refusals(_: str = Depends(viewer), hours: int = Query(24, ge=1, le=24 * 90)) -> dict:
        since = now() - timedelta(hours=hours)
        rows = await fetch(ledger_sql.REFUSALS, {"since": since})
        trips = await fetch(ledger_sql.BREAKER_TRIPS, {"since": since})
        return {"hours": hours, "since": since.isoformat(), "refusals": rows, "breaker_trips": trips}

    return r

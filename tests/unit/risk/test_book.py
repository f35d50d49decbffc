"""Risk's own account book: average-cost P&L, cash, calendar-window budgets."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.risk.book import Book
from services.risk.breakers import day_window, week_window
from tests.unit.risk.conftest import T0, fill

UTC = ZoneInfo("UTC")


def test_round_trip_at_the_same_price_loses_exactly_the_fees():
    b = Book(cash=Decimal("1000"))
    b.apply_fill(fill("BTC/USDT", "BUY", "0.001", "60000"), T0, UTC)
    out = b.apply_fill(fill("BTC/USDT", "SELL", "0.001", "60000"), T0, UTC)
    assert b.realized_total == Decimal("-0.12") and out.losing_trade
    assert b.cash == Decimal("1000") - Decimal("0.12") and b.positions == {}
    assert b.daily_realized == b.weekly_realized == Decimal("-0.12")


def test_average_cost_over_two_buys_then_partial_sell():
    b = Book(cash=Decimal("10000"))
    b.apply_fill(fill("ETH/USDT", "BUY", "1", "3000", fee="0"), T0, UTC)
    b.apply_fill(fill("ETH/USDT", "BUY", "1", "3200", fee="0"), T0, UTC)
    assert b.avg_cost["ETH/USDT"] == Decimal("3100")
    out = b.apply_fill(fill("ETH/USDT", "SELL", "0.5", "3300", fee="1"), T0, UTC)
    assert out.realized_own == Decimal("99") and not out.losing_trade
    assert b.positions["ETH/USDT"] == Decimal("1.5") and b.loss_streak == 0


def test_the_budget_uses_the_worse_of_own_and_reported_pnl():
    b = Book(cash=Decimal("10000"))
    b.apply_fill(fill("ETH/USDT", "BUY", "1", "3000", fee="0"), T0, UTC)
    b.apply_fill(fill("ETH/USDT", "SELL", "1", "3010", fee="0", reported="-50"), T0, UTC)
    assert b.daily_own == Decimal("10") and b.daily_reported == Decimal("-50")
    assert b.daily_realized == Decimal("-50")


def test_a_sell_never_takes_the_position_below_zero():
    b = Book(cash=Decimal("10000"))
    b.apply_fill(fill("ETH/USDT", "BUY", "1", "3000", fee="0"), T0, UTC)
    out = b.apply_fill(fill("ETH/USDT", "SELL", "1.5", "3000", fee="0"), T0, UTC)
    assert out.oversold == Decimal("0.5") and "ETH/USDT" not in b.positions


trades = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=14 * 24 * 60),  # minutes after T0
        st.sampled_from(["BUY", "SELL"]),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2"), places=2),
        st.decimals(min_value=Decimal("2500"), max_value=Decimal("3500"), places=2),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(trades=trades, zone=st.sampled_from([UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]))
def test_window_budgets_equal_the_pnl_of_fills_inside_the_current_windows(trades, zone):
    b = Book(cash=Decimal("100000"))
    applied = []
    for minutes, side, qty, px in sorted(trades):
        ts = T0 + timedelta(minutes=minutes)
        if side == "SELL":  # spot: only what is held can be sold (oversold fills are a separate test)
            qty = min(qty, b.positions.get("ETH/USDT", Decimal(0)))
            if qty <= 0:
                continue
        out = b.apply_fill(fill("ETH/USDT", side, str(qty), str(px), ts=ts), ts, zone)
        applied.append((ts, out.realized_own))
    if not applied:
        return
    last = applied[-1][0]
    d0, _ = day_window(last, zone)
    w0, _ = week_window(last, zone)
    assert b.daily_own == sum((r for ts, r in applied if ts >= d0), Decimal(0))
    assert b.weekly_own == sum((r for ts, r in applied if ts >= w0), Decimal(0))
    assert b.realized_total == sum((r for _, r in applied), Decimal(0))
    # cash + positions at cost == starting cash + realized P&L (fees included)
    at_cost = sum((q * b.avg_cost[s] for s, q in b.positions.items()), Decimal(0))
    assert abs(b.cash + at_cost - (Decimal("100000") + b.realized_total)) < Decimal(
        "1e-18"
    )  # Decimal division
    assert all(q >= 0 for q in b.positions.values())

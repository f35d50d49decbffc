"""Risk's own account book (pure): positions, average cost, cash, realized P&L per calendar window.

Risk does not trust one source blindly: it computes realized P&L itself (average cost) and also sums
execution's `realized_pnl_usdt`; the budgets use the worse of the two window sums. In risk's own figure
fees are realized losses when paid (a BUY's fee counts at once: the conservative reading for a loss
budget); execution capitalises a BUY's fee into the cost and realizes it at the SELL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from libs.common.contracts import Fill
from services.risk.breakers import day_window, week_window

ZERO = Decimal("0")


@dataclass(frozen=True)
class FillOutcome:
    realized_own: Decimal
    realized_reported: Decimal
    losing_trade: bool
    closed_qty: Decimal
    oversold: Decimal = ZERO  # a SELL above the held quantity (should never happen on spot)


@dataclass
class Book:
    cash: Decimal
    positions: dict[str, Decimal] = field(default_factory=dict)
    avg_cost: dict[str, Decimal] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    realized_total: Decimal = ZERO
    daily_own: Decimal = ZERO
    weekly_own: Decimal = ZERO
    daily_reported: Decimal = ZERO
    weekly_reported: Decimal = ZERO
    day_start: datetime | None = None
    week_start: datetime | None = None
    peak_equity: Decimal = ZERO
    loss_streak: int = 0
    last_loss_at: dict[str, datetime] = field(default_factory=dict)
    last_loss_any: datetime | None = None
    fills_applied: int = 0

    # -- windows -------------------------------------------------------------------------------
    def roll(self, now: datetime, tz: ZoneInfo) -> bool:
        """Start new day/week windows when `now` has left the current ones; True if anything reset."""
        return self.roll_to(day_window(now, tz)[0], week_window(now, tz)[0])

    def roll_to(self, d0: datetime, w0: datetime) -> bool:
        """Move to the windows starting at `d0` (day) and `w0` (week) if they are newer than the current ones."""
        changed = False
        if self.day_start is None or d0 > self.day_start:
            self.day_start, self.daily_own, self.daily_reported, changed = d0, ZERO, ZERO, True
        if self.week_start is None or w0 > self.week_start:
            self.week_start, self.weekly_own, self.weekly_reported, changed = w0, ZERO, ZERO, True
        return changed

    @property
    def daily_realized(self) -> Decimal:
        """The budget's figure: the worse of risk's own and execution's reported P&L."""
        return min(self.daily_own, self.daily_reported)

    @property
    def weekly_realized(self) -> Decimal:
        return min(self.weekly_own, self.weekly_reported)

    # -- fills ---------------------------------------------------------------------------------
    def fee_in_quote(self, fill: Fill, quote: str, base: str) -> Decimal:
        if fill.fee_asset == quote:
            return fill.fee
        if fill.fee_asset == base:
            return fill.fee * fill.price
        px = self.last_price.get(f"{fill.fee_asset}/{quote}")
        return fill.fee * px if px is not None else ZERO

    def apply_fill(self, fill: Fill, now: datetime, tz: ZoneInfo) -> FillOutcome:
        self.roll(now, tz)
        base, _, quote = fill.symbol.partition("/")
        fee = self.fee_in_quote(fill, quote, base)
        held = self.positions.get(fill.symbol, ZERO)
        avg = self.avg_cost.get(fill.symbol, ZERO)
        oversold = ZERO
        if fill.side == "BUY":
            got = fill.quantity - (fill.fee if fill.fee_asset == base else ZERO)
            new_qty = held + got
            self.avg_cost[fill.symbol] = (
                ((held * avg + fill.quantity * fill.price) / new_qty) if new_qty > 0 else ZERO
            )
            self.positions[fill.symbol] = new_qty
            self.cash -= fill.quantity * fill.price + (fee if fill.fee_asset != base else ZERO)
            realized, closed, losing = -fee, ZERO, False
        else:
            closed = min(fill.quantity, held)
            oversold = fill.quantity - closed
            realized = (fill.price - avg) * closed - fee
            self.positions[fill.symbol] = held - closed
            if self.positions[fill.symbol] <= 0:
                self.positions.pop(fill.symbol, None)
                self.avg_cost.pop(fill.symbol, None)
            self.cash += fill.quantity * fill.price - (fee if fill.fee_asset != base else ZERO)
            losing = realized < 0
            if losing:
                self.loss_streak += 1
                self.last_loss_at[fill.symbol] = fill.ts
                self.last_loss_any = (
                    fill.ts if self.last_loss_any is None else max(self.last_loss_any, fill.ts)
                )
            else:
                self.loss_streak = 0
        # Execution's own figure: it capitalises a BUY's fee (realized 0) and realizes at the SELL. A SELL
        # reported at exactly 0 is taken as "not computed" and risk's own figure stands in for it.
        reported = fill.realized_pnl_usdt if (fill.side == "BUY" or fill.realized_pnl_usdt != 0) else realized
        self.realized_total += realized
        if self.day_start is not None and fill.ts >= self.day_start:
            self.daily_own += realized
            self.daily_reported += reported
        if self.week_start is not None and fill.ts >= self.week_start:
            self.weekly_own += realized
            self.weekly_reported += reported
        self.fills_applied += 1
        self.mark()
        return FillOutcome(realized, reported, losing, closed, oversold)

    # -- valuation -----------------------------------------------------------------------------
    def price_of(self, symbol: str) -> Decimal:
        return self.last_price.get(symbol) or self.avg_cost.get(symbol, ZERO)

    def exposure(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, ZERO) * self.price_of(symbol)

    def exposures(self) -> dict[str, Decimal]:
        return {s: self.exposure(s) for s, q in self.positions.items() if q > 0}

    def total_exposure(self) -> Decimal:
        return sum(self.exposures().values(), ZERO)

    def equity(self) -> Decimal:
        return self.cash + self.total_exposure()

    def mark(self) -> Decimal:
        """Re-value; the peak only ever rises (until an operator re-bases it)."""
        eq = self.equity()
        if eq > self.peak_equity:
            self.peak_equity = eq
        return eq

    def drawdown_pct(self) -> float:
        if self.peak_equity <= 0:
            return 0.0
        return max(0.0, float((self.peak_equity - self.equity()) / self.peak_equity * 100))

    def open_positions(self, dust_usdt: Decimal) -> list[str]:
        return [s for s, q in self.positions.items() if q > 0 and self.exposure(s) >= dust_usdt]

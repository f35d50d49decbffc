"""The paper exchange (pure core): market orders at the touch plus slippage, resting limit orders that fill
when the price crosses them (partially, by the tick's volume), Binance maker/taker fees, spot balances that
never go negative. No I/O and no clock; the shell journals every result before it publishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, TypeVar

from libs.common.contracts.market import TickView
from services.execution.ledger import ZERO, FillAccounting, Ledger, split_symbol
from services.execution.records import FillRow

if TYPE_CHECKING:
    from libs.common.markets import Markets

Q8 = Decimal("0.00000001")
BNB_DISCOUNT = Decimal("0.75")
BPS_PER_UNIT = Decimal("10000")  # basis points in one (1 bp = 0.0001)


Q = TypeVar("Q", bound=TickView)


@dataclass(frozen=True)
class FeeSchedule:
    taker: Decimal = Decimal("0.001")
    maker: Decimal = Decimal("0.001")
    bnb_discount: bool = False

    def rate(self, is_maker: bool) -> Decimal:
        r = self.maker if is_maker else self.taker
        return r * BNB_DISCOUNT if self.bnb_discount else r

    def fee(self, quantity: Decimal, price: Decimal, is_maker: bool) -> Decimal:
        """The fee in the quote asset, to 8 decimals (the paper book charges fees in quote)."""
        return (quantity * price * self.rate(is_maker)).quantize(Q8, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class SlippageModel:
    """Slippage beyond the touch: a fixed part plus a part growing with the order's notional (depth)."""

    bps: Decimal = Decimal("1")
    bps_per_10k_usdt: Decimal = Decimal("2")

    def total_bps(self, notional: Decimal) -> Decimal:
        return self.bps + self.bps_per_10k_usdt * notional / BPS_PER_UNIT

    def price(self, side: str, tick: TickView, quantity: Decimal) -> Decimal:
        touch = tick.ask if side == "BUY" else tick.bid
        s = self.total_bps(quantity * touch) / BPS_PER_UNIT
        return touch * (1 + s) if side == "BUY" else touch * (1 - s)


PriceRounder = Callable[[str, Decimal, str], Decimal]
"""(symbol, price, side) -> the price on the exchange's tick, rounded against the trader (paper fills)."""


def _no_rounding(symbol: str, price: Decimal, side: str) -> Decimal:
    return price.quantize(Q8, rounding=ROUND_HALF_UP)


def exchange_rounder(markets: Markets | None) -> PriceRounder:
    """Paper fill prices land on the exchange's tick, rounded against us (a BUY up, a SELL down); a symbol
    without filters (or no filters loaded) rounds to 8 decimals."""
    from libs.common.markets import UnknownMarketError

    def rnd(symbol: str, price: Decimal, side: str) -> Decimal:
        if markets is not None:
            try:
                return markets.round_price(symbol, price, "SELL" if side == "BUY" else "BUY")
            except UnknownMarketError:
                pass
        return price.quantize(Q8)

    return rnd


def usable_tick(tick: Q | None, now: datetime, stale_after_s: float) -> Q | None:
    """The tick a paper order prices against: a stale price is no price."""
    if tick is not None and (now - tick.ts).total_seconds() > stale_after_s:
        return None
    return tick


def new_paper_order(
    client_order_id: str,
    symbol: str,
    side: str,
    order_type: str,
    quantity: Decimal,
    limit_price: Decimal | None,
    now: datetime,
    limit_order_ttl_s: float,
) -> PaperOrder:
    """The paper order for a journaled order; a resting limit is cancelled `limit_order_ttl_s` after now (0 = GTC)."""
    return PaperOrder(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        order_type=order_type,
        quantity=quantity,
        limit_price=limit_price,
        created_at=now,
        expires_at=now + timedelta(seconds=limit_order_ttl_s) if limit_order_ttl_s else None,
    )


@dataclass
class PaperOrder:
    client_order_id: str
    symbol: str
    side: str  # BUY | SELL
    order_type: str  # MARKET | LIMIT
    quantity: Decimal
    limit_price: Decimal | None
    created_at: datetime
    expires_at: datetime | None = None  # resting limit orders: cancelled after this instant
    filled: Decimal = ZERO
    notional: Decimal = ZERO  # sum of fill quantity * price
    fees: Decimal = ZERO
    trades: int = 0
    locked: Decimal = ZERO  # amount of the paying asset reserved while resting
    status: str = "SUBMITTED"

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def average_price(self) -> Decimal | None:
        return (self.notional / self.filled).quantize(Q8) if self.filled > 0 else None


@dataclass(frozen=True)
class PaperTrade:
    trade_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    is_maker: bool
    accounting: FillAccounting


def fill_row(trade: PaperTrade, ts: datetime) -> FillRow:
    """The journal's fill row of a paper trade booked at `ts`: the one mapping the paper broker journals and the
    backtest records (and hands to risk), so both read the same quantity, price, fee and realized P&L."""
    return FillRow(
        exchange="paper",
        trade_id=trade.trade_id,
        client_order_id=trade.client_order_id,
        symbol=trade.symbol,
        side=trade.side,
        quantity=trade.quantity,
        price=trade.price,
        fee=trade.fee,
        fee_asset=trade.fee_asset,
        ts=ts,
        is_maker=trade.is_maker,
        realized_pnl_usdt=trade.accounting.realized_pnl_usdt,
        fee_usdt=trade.accounting.fee_quote,
    )


@dataclass(frozen=True)
class PaperResult:
    """What happened to one order: its new status, the trades it made, why (when it did not fill)."""

    order: PaperOrder
    status: str
    trades: tuple[PaperTrade, ...] = ()
    reason: str = ""


@dataclass
class PaperExchange:
    ledger: Ledger
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    slippage: SlippageModel = field(default_factory=SlippageModel)
    participation: Decimal = Decimal("1")
    round_price: PriceRounder = _no_rounding
    book: dict[str, PaperOrder] = field(default_factory=dict)  # resting orders by client order id

    # -- orders ---------------------------------------------------------------------------------
    def submit(self, order: PaperOrder, tick: TickView | None, now: datetime) -> PaperResult:
        """Match a new order against the last tick: fill, rest, or reject with a reason."""
        if order.quantity <= 0:
            return self._reject(order, "quantity_not_positive")
        if tick is None:
            return self._reject(order, "no_market_price")
        if order.order_type == "MARKET":
            return self._take(order, tick, cap=order.limit_price)
        assert order.limit_price is not None and order.limit_price > 0
        crossed = (tick.ask <= order.limit_price) if order.side == "BUY" else (tick.bid >= order.limit_price)
        if crossed:  # marketable limit: a taker fill at the touch plus slippage, never beyond the limit
            return self._take(order, tick, cap=order.limit_price, clamp=True)
        return self._rest(order)

    def _take(
        self, order: PaperOrder, tick: TickView, cap: Decimal | None, clamp: bool = False
    ) -> PaperResult:
        price = self.round_price(
            order.symbol, self.slippage.price(order.side, tick, order.quantity), order.side
        )
        if cap is not None and (
            (order.side == "BUY" and price > cap) or (order.side == "SELL" and price < cap)
        ):
            if not clamp:
                return self._reject(order, "price_beyond_limit")
            price = cap
        check = (
            self.ledger.check_buy(order.symbol, order.quantity, price, self.fees.rate(False))
            if order.side == "BUY"
            else self.ledger.check_sell(order.symbol, order.quantity)
        )
        if not check.allowed:
            return self._reject(order, check.reason)
        trade = self._trade(order, order.quantity, price, is_maker=False, from_locked=ZERO)
        order.status = "FILLED"
        return PaperResult(order, "FILLED", (trade,))

    def _rest(self, order: PaperOrder) -> PaperResult:
        assert order.limit_price is not None
        base, quote = split_symbol(order.symbol)
        if order.side == "BUY":
            need = (order.quantity * order.limit_price * (1 + self.fees.rate(True))).quantize(
                Q8, rounding="ROUND_UP"
            )
            check = self.ledger.check_buy(
                order.symbol, order.quantity, order.limit_price, self.fees.rate(True)
            )
            asset = quote
        else:
            need = order.quantity
            check = self.ledger.check_sell(order.symbol, order.quantity)
            asset = base
        if not check.allowed or need > self.ledger.balance(asset).free:
            return self._reject(order, check.reason or "insufficient_balance")
        self.ledger.lock(asset, need)
        order.locked = need
        order.status = "ACCEPTED"
        self.book[order.client_order_id] = order
        return PaperResult(order, "ACCEPTED")

    def restore(self, order: PaperOrder) -> None:
        """Put back a resting order read from the journal (its funds are already locked in the balances)."""
        self.book[order.client_order_id] = order

    def cancel(self, client_order_id: str) -> PaperResult | None:
        order = self.book.pop(client_order_id, None)
        if order is None:
            return None
        self._release(order)
        order.status = "CANCELLED"
        return PaperResult(order, "CANCELLED", reason="cancelled")

    def cancel_all(self, reason: str = "kill_switch") -> list[PaperResult]:
        out = []
        for coid in list(self.book):
            res = self.cancel(coid)
            if res is not None:
                out.append(PaperResult(res.order, "CANCELLED", reason=reason))
        return out

    def expire(self, now: datetime) -> list[PaperResult]:
        out = []
        for coid, order in list(self.book.items()):
            if order.expires_at is not None and now >= order.expires_at:
                res = self.cancel(coid)
                if res is not None:
                    out.append(PaperResult(res.order, "CANCELLED", reason="expired"))
        return out

    # -- market events --------------------------------------------------------------------------
    def on_tick(self, tick: TickView, now: datetime) -> list[PaperResult]:
        """Fill resting orders the tick crosses, each limited by the tick's volume (partial fills)."""
        out: list[PaperResult] = []
        available = tick.volume * self.participation
        for coid, order in list(self.book.items()):
            if order.symbol != tick.symbol or available <= 0:
                continue
            assert order.limit_price is not None
            crossed = tick.ask <= order.limit_price if order.side == "BUY" else tick.bid >= order.limit_price
            if not crossed:
                continue
            qty = min(order.remaining, available)
            if qty <= 0:
                continue
            available -= qty
            price = order.limit_price
            if order.side == "BUY":
                from_locked = qty * price + self.fees.fee(qty, price, True)
            else:
                from_locked = qty
            trade = self._trade(order, qty, price, is_maker=True, from_locked=min(from_locked, order.locked))
            order.locked -= min(from_locked, order.locked)
            if order.remaining <= 0:
                self.book.pop(coid, None)
                self._release(order)
                order.status = "FILLED"
            else:
                order.status = "PARTIALLY_FILLED"
            out.append(PaperResult(order, order.status, (trade,)))
        return out

    # -- helpers --------------------------------------------------------------------------------
    def _trade(
        self, order: PaperOrder, qty: Decimal, price: Decimal, *, is_maker: bool, from_locked: Decimal
    ) -> PaperTrade:
        _, quote = split_symbol(order.symbol)
        fee = self.fees.fee(qty, price, is_maker)
        acc = self.ledger.apply_fill(
            order.symbol, order.side, qty, price, fee, quote, from_locked=from_locked
        )
        order.trades += 1
        order.filled += qty
        order.notional += qty * price
        order.fees += fee
        return PaperTrade(
            trade_id=f"{order.client_order_id}-{order.trades}",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=qty,
            price=price,
            fee=fee,
            fee_asset=quote,
            is_maker=is_maker,
            accounting=acc,
        )

    def _release(self, order: PaperOrder) -> None:
        if order.locked > 0:
            base, quote = split_symbol(order.symbol)
            self.ledger.unlock(quote if order.side == "BUY" else base, order.locked)
            order.locked = ZERO

    def _reject(self, order: PaperOrder, reason: str) -> PaperResult:
        order.status = "REJECTED"
        return PaperResult(order, "REJECTED", reason=reason)

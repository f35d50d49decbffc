"""Exchange filters per symbol, and the ONE place quantities and prices are rounded to them.

Filters come from a ccxt-format markets JSON (what `ccxt.binance().load_markets()` returns, keyed by
unified symbol). The raw Binance `info.filters` are preferred (exact decimal strings); ccxt's `limits`
and `precision` are the fallback. Everything is `Decimal`; nothing here does I/O after loading.

Rounding rules (each one never increases risk):
- `round_quantity` rounds DOWN to the lot step (never more than asked for);
- `round_price` rounds a BUY limit DOWN and a SELL limit UP to the tick (never a worse price than asked);
  without a side it rounds to the nearest tick.

`check_order` says whether the exchange would accept an order, with every reason that applies
(stable, low-cardinality strings fit for metric labels).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MARKETS_PATH = ROOT / "configs" / "markets" / "binance_spot_markets.json"

Side = Literal["BUY", "SELL"]
ZERO = Decimal("0")


class UnknownMarketError(KeyError):
    """No filters for this symbol: nothing may be sized or sent for it (fail closed)."""


def _dec(value: Any) -> Decimal | None:
    """A Decimal from a JSON number/string (floats through `str` so 1e-05 stays 0.00001); None if absent."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return d.normalize() if d != 0 else ZERO


def _positive(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


@dataclass(frozen=True)
class MarketFilters:
    """The filters of one spot market. `None` means the exchange sets no such limit."""

    symbol: str
    id: str
    base: str
    quote: str
    active: bool = True
    tick_size: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    step_size: Decimal | None = None
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    market_step_size: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    max_notional: Decimal | None = None
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    max_num_orders: int | None = None
    # PERCENT_PRICE_BY_SIDE: a BUY's price must lie in [avg*bid_down, avg*bid_up], a SELL's in [avg*ask_down, avg*ask_up]
    bid_multiplier_up: Decimal | None = None
    bid_multiplier_down: Decimal | None = None
    ask_multiplier_up: Decimal | None = None
    ask_multiplier_down: Decimal | None = None
    taker_fee: Decimal | None = None
    maker_fee: Decimal | None = None

    @classmethod
    def from_ccxt(cls, market: dict[str, Any]) -> MarketFilters:
        """Build from one ccxt market dict; raw Binance filters win over ccxt's derived limits."""
        limits = market.get("limits") or {}
        amount, price, cost = limits.get("amount") or {}, limits.get("price") or {}, limits.get("cost") or {}
        mkt = limits.get("market") or {}
        precision = market.get("precision") or {}
        info = market.get("info") or {}
        kw: dict[str, Any] = {
            "tick_size": _tick_from_precision(precision.get("price")),
            "min_price": _positive(_dec(price.get("min"))),
            "max_price": _positive(_dec(price.get("max"))),
            "step_size": _tick_from_precision(precision.get("amount")),
            "min_qty": _positive(_dec(amount.get("min"))),
            "max_qty": _positive(_dec(amount.get("max"))),
            "market_min_qty": _positive(_dec(mkt.get("min"))),
            "market_max_qty": _positive(_dec(mkt.get("max"))),
            "min_notional": _positive(_dec(cost.get("min"))),
            "max_notional": _positive(_dec(cost.get("max"))),
        }
        for f in info.get("filters") or []:
            kind = f.get("filterType")
            if kind == "PRICE_FILTER":
                kw.update(
                    tick_size=_positive(_dec(f.get("tickSize"))),
                    min_price=_positive(_dec(f.get("minPrice"))),
                    max_price=_positive(_dec(f.get("maxPrice"))),
                )
            elif kind == "LOT_SIZE":
                kw.update(
                    step_size=_positive(_dec(f.get("stepSize"))),
                    min_qty=_positive(_dec(f.get("minQty"))),
                    max_qty=_positive(_dec(f.get("maxQty"))),
                )
            elif kind == "MARKET_LOT_SIZE":
                kw.update(
                    market_step_size=_positive(_dec(f.get("stepSize"))),
                    market_min_qty=_positive(_dec(f.get("minQty"))),
                    market_max_qty=_positive(_dec(f.get("maxQty"))),
                )
            elif kind in ("NOTIONAL", "MIN_NOTIONAL"):
                kw["min_notional"] = _positive(_dec(f.get("minNotional")))
                if kind == "NOTIONAL":
                    kw["max_notional"] = _positive(_dec(f.get("maxNotional")))
                    kw["apply_max_to_market"] = bool(f.get("applyMaxToMarket", False))
                kw["apply_min_to_market"] = bool(f.get("applyMinToMarket", f.get("applyToMarket", True)))
            elif kind == "MAX_NUM_ORDERS":
                kw["max_num_orders"] = int(f["maxNumOrders"]) if f.get("maxNumOrders") else None
            elif kind == "PERCENT_PRICE_BY_SIDE":
                kw.update(
                    bid_multiplier_up=_positive(_dec(f.get("bidMultiplierUp"))),
                    bid_multiplier_down=_positive(_dec(f.get("bidMultiplierDown"))),
                    ask_multiplier_up=_positive(_dec(f.get("askMultiplierUp"))),
                    ask_multiplier_down=_positive(_dec(f.get("askMultiplierDown"))),
                )
            elif kind == "PERCENT_PRICE":
                up, down = _positive(_dec(f.get("multiplierUp"))), _positive(_dec(f.get("multiplierDown")))
                kw.update(
                    bid_multiplier_up=up,
                    bid_multiplier_down=down,
                    ask_multiplier_up=up,
                    ask_multiplier_down=down,
                )
        status = info.get("status")
        active = bool(market.get("active", True)) and (status is None or status == "TRADING")
        return cls(
            symbol=market["symbol"],
            id=market.get("id") or market["symbol"].replace("/", ""),
            base=market.get("base") or market["symbol"].split("/")[0],
            quote=market.get("quote") or market["symbol"].split("/")[1].split(":")[0],
            active=active,
            taker_fee=_dec(market.get("taker")),
            maker_fee=_dec(market.get("maker")),
            **kw,
        )


def _tick_from_precision(p: Any) -> Decimal | None:
    """ccxt precision: an int is a number of decimal places (Binance's mode here), a float is the tick itself."""
    if p is None:
        return None
    d = _dec(p)
    if d is None:
        return None
    if d == d.to_integral_value() and d >= 1 and not isinstance(p, float):
        return Decimal(1).scaleb(-int(d))
    if d == 0:
        return Decimal(1)
    return d if d < 1 else Decimal(1).scaleb(-int(d))


@dataclass(frozen=True)
class OrderCheck:
    """Would the exchange accept this order? `reasons` lists every filter it breaks (empty when allowed)."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    notional: Decimal = ZERO

    @property
    def reason(self) -> str:
        return self.reasons[0] if self.reasons else ""


def floor_to_step(value: Decimal, step: Decimal | None) -> Decimal:
    """The largest multiple of `step` not above `value` (value itself when there is no step)."""
    if step is None or step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=ROUND_FLOOR) * step).quantize(step)


def _on_step(value: Decimal, step: Decimal | None) -> bool:
    return step is None or step <= 0 or value % step == 0


@dataclass(frozen=True)
class Markets:
    """Filters for every known spot market, with the rounding and checks that use them."""

    filters: dict[str, MarketFilters] = field(default_factory=dict)
    source: str = ""

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def from_ccxt(cls, markets: dict[str, Any], *, source: str = "", spot_only: bool = True) -> Markets:
        out: dict[str, MarketFilters] = {}
        for symbol, m in markets.items():
            if not isinstance(m, dict) or "symbol" not in m:
                continue
            if spot_only and not (m.get("spot") or m.get("type") == "spot"):
                continue
            out[symbol] = MarketFilters.from_ccxt(m)
        return cls(out, source)

    @classmethod
    def load(cls, path: str | Path | None = None, *, spot_only: bool = True) -> Markets:
        p = Path(path) if path else DEFAULT_MARKETS_PATH
        return cls.from_ccxt(json.loads(p.read_text()), source=str(p), spot_only=spot_only)

    # -- lookup ---------------------------------------------------------------------------------
    def __contains__(self, symbol: object) -> bool:
        return symbol in self.filters

    @property
    def symbols(self) -> list[str]:
        return sorted(self.filters)

    def get(self, symbol: str) -> MarketFilters:
        try:
            return self.filters[symbol]
        except KeyError:
            raise UnknownMarketError(symbol) from None

    # -- rounding (the one place it happens) ----------------------------------------------------
    def round_quantity(self, symbol: str, qty: Decimal, *, order_type: str = "LIMIT") -> Decimal:
        """Round DOWN to the lot step (MARKET orders also to the market step); never below zero."""
        f = self.get(symbol)
        if qty <= 0:
            return ZERO
        q = floor_to_step(qty, f.step_size)
        if order_type == "MARKET" and f.market_step_size:
            q = floor_to_step(q, f.market_step_size)
        return q

    def round_price(self, symbol: str, price: Decimal, side: Side | None = None) -> Decimal:
        """To the tick: a BUY limit down, a SELL limit up (never a worse price), nearest without a side."""
        f = self.get(symbol)
        tick = f.tick_size
        if tick is None or price <= 0:
            return price
        mode = {"BUY": ROUND_FLOOR, "SELL": ROUND_CEILING}.get(side or "", ROUND_HALF_EVEN)
        return ((price / tick).to_integral_value(rounding=mode) * tick).quantize(tick)

    def quantity_for_notional(self, symbol: str, notional: Decimal, price: Decimal) -> Decimal:
        """The largest on-step quantity whose notional at `price` does not exceed `notional`."""
        if notional <= 0 or price <= 0:
            return ZERO
        return self.round_quantity(symbol, notional / price)

    def min_quantity_for(self, symbol: str, price: Decimal) -> Decimal:
        """The smallest on-step quantity that passes min qty and min notional at `price`."""
        f = self.get(symbol)
        need = f.min_qty or ZERO
        if f.min_notional and price > 0:
            need = max(need, f.min_notional / price)
        step = f.step_size
        if step is None:
            return need
        q = (need / step).to_integral_value(rounding=ROUND_CEILING) * step
        return q.quantize(step) if q > 0 else step

    # -- the exchange's view ----------------------------------------------------------------------
    def check_order(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        order_type: str = "LIMIT",
        open_orders: int = 0,
        reference_price: Decimal | None = None,
    ) -> OrderCheck:
        """Every exchange filter this order breaks. `price` is the limit (or, for MARKET, the expected price);
        `reference_price` (the recent average) enables PERCENT_PRICE_BY_SIDE; `open_orders` MAX_NUM_ORDERS."""
        try:
            f = self.get(symbol)
        except UnknownMarketError:
            return OrderCheck(False, ("unknown_market",))
        reasons: list[str] = []
        if not f.active:
            reasons.append("market_not_trading")
        if side not in ("BUY", "SELL"):
            reasons.append("invalid_side")
        if qty <= 0:
            reasons.append("quantity_not_positive")
        if price <= 0:
            reasons.append("price_not_positive")
        if reasons and ("quantity_not_positive" in reasons or "price_not_positive" in reasons):
            return OrderCheck(False, tuple(reasons))
        market = order_type == "MARKET"
        if not _on_step(qty, f.step_size):
            reasons.append("quantity_off_step")
        if f.min_qty is not None and qty < f.min_qty:
            reasons.append("quantity_below_min")
        if f.max_qty is not None and qty > f.max_qty:
            reasons.append("quantity_above_max")
        if market:
            if not _on_step(qty, f.market_step_size):
                reasons.append("quantity_off_market_step")
            if f.market_min_qty is not None and qty < f.market_min_qty:
                reasons.append("quantity_below_market_min")
            if f.market_max_qty is not None and qty > f.market_max_qty:
                reasons.append("quantity_above_market_max")
        else:
            if not _on_step(price, f.tick_size):
                reasons.append("price_off_tick")
            if f.min_price is not None and price < f.min_price:
                reasons.append("price_below_min")
            if f.max_price is not None and price > f.max_price:
                reasons.append("price_above_max")
        notional = qty * price
        if f.min_notional is not None and (not market or f.apply_min_to_market) and notional < f.min_notional:
            reasons.append("notional_below_min")
        if f.max_notional is not None and (not market or f.apply_max_to_market) and notional > f.max_notional:
            reasons.append("notional_above_max")
        if f.max_num_orders is not None and open_orders >= f.max_num_orders:
            reasons.append("max_num_orders")
        if reference_price is not None and reference_price > 0 and not market:
            up, down = (
                (f.bid_multiplier_up, f.bid_multiplier_down)
                if side == "BUY"
                else (f.ask_multiplier_up, f.ask_multiplier_down)
            )
            if (up is not None and price > reference_price * up) or (
                down is not None and price < reference_price * down
            ):
                reasons.append("percent_price")
        return OrderCheck(not reasons, tuple(reasons), notional)


@lru_cache(maxsize=4)
def load_markets(path: str | None = None) -> Markets:
    """The markets file (default: the repo's Binance spot snapshot), loaded once per path."""
    return Markets.load(path)


__all__ = [
    "DEFAULT_MARKETS_PATH",
    "MarketFilters",
    "Markets",
    "OrderCheck",
    "UnknownMarketError",
    "floor_to_step",
    "load_markets",
]

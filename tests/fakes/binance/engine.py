"""The fake's exchange state: books, public trades, candles, one account, orders and a simple matcher.

Plain synchronous Python guarded by one re-entrant lock, so tests may drive it from any thread while the
aiohttp server (in its own loop or thread) reads it. Every state change calls `listener(kind, symbol)`
so the server can push websocket updates. Errors are `BinanceError(code, msg, status)`, raised with the
exact codes and messages Binance uses.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import itertools
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from tests.fakes.binance.markets import BTCUSDT_1H_CSV, SymbolSpec, load_specs, vendored_data_dir

D = Decimal
ZERO = D(0)
FEE_RATE = D("0.001")

INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}


class BinanceError(Exception):
    """An error answer exactly as Binance gives it: HTTP status + {"code": ..., "msg": ...}."""

    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def decimal_param(p: dict, name: str) -> Decimal:
    """A decimal request parameter, validated the way Binance does (-1100 on anything but digits[.digits])."""
    v = str(p.get(name, ""))
    if not DECIMAL_RE.match(v):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return D(v)


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def fmt(x: Decimal, places: int = 8) -> str:
    """Binance writes decimals with 8 places ("0.01000000")."""
    return format(x, f".{places}f")


class Clock:
    """Server time in ms. `offset_ms` skews it; `freeze(ms)` pins it (then `advance(ms)` moves it)."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self._frozen: int | None = None

    def now_ms(self) -> int:
        if self._frozen is not None:
            return self._frozen
        return int(time.time() * 1000) + self.offset_ms

    def freeze(self, ms: int | None = None) -> None:
        self._frozen = self.now_ms() if ms is None else int(ms)

    def advance(self, ms: int) -> None:
        if self._frozen is None:
            self.offset_ms += int(ms)
        else:
            self._frozen += int(ms)

    def unfreeze(self) -> None:
        self._frozen = None


@dataclass
class Book:
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal
    ask_qty: Decimal
    gap: Decimal  # price distance between synthetic depth levels
    levels: int = 20
    update_id: int = 1

    def side(self, side: str) -> list[tuple[Decimal, Decimal]]:
        """Levels of one side, best first: the top level, then deeper levels with growing size."""
        if side == "bids":
            top, qty, sign = self.bid, self.bid_qty, -1
        else:
            top, qty, sign = self.ask, self.ask_qty, 1
        out = []
        for i in range(self.levels):
            p = top + sign * self.gap * i
            if p <= 0:
                break
            out.append((p, qty * (1 + i)))
        return out


@dataclass
class PublicTrade:
    id: int
    price: Decimal
    qty: Decimal
    time: int
    buyer_maker: bool


@dataclass
class Fill:
    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    maker: bool


@dataclass
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    fills: list[Fill] = field(default_factory=list)
    lock_asset: str = ""
    locked: Decimal = ZERO  # what this order still holds locked
    orig_quote_qty: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def as_query(self) -> dict:
        """GET /api/v3/order shape."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": self.status in ("NEW", "PARTIALLY_FILLED", "FILLED") and self.type != "MARKET",
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def as_new_order_response(self, resp_type: str) -> dict:
        """POST /api/v3/order shape for newOrderRespType ACK / RESULT / FULL."""
        ack = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.time,
        }
        if resp_type == "ACK":
            return ack
        res = {
            **ack,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if resp_type == "FULL":
            res["fills"] = [
                {
                    "price": fmt(f.price),
                    "qty": fmt(f.qty),
                    "commission": fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in self.fills
            ]
        return res


@dataclass
class Ticker24:
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    last_qty: Decimal
    volume: Decimal
    quote_volume: Decimal
    count: int


def _noise(*parts: object) -> float:
    """Deterministic uniform [0, 1) from the parts."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


class Engine:
    def __init__(
        self,
        specs: dict[str, SymbolSpec] | None = None,
        data_dir: Path | None = None,
        balances: dict[str, Decimal | str | float] | None = None,
        book_levels: int = 20,
        real_klines: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.data_dir = data_dir or vendored_data_dir()
        self.specs = specs or load_specs(self.data_dir)
        self.listener: Callable[[str, str, object], None] | None = None
        self._pending: list[tuple[str, str, object]] = []
        self.books: dict[str, Book] = {}
        self.tickers: dict[str, Ticker24] = {}
        self.trades: dict[str, list[PublicTrade]] = {s: [] for s in self.specs}
        self._trade_ids = itertools.count(100_000)
        self._order_ids = itertools.count(1_000_001)
        self.book_levels = book_levels
        self.real_klines = real_klines
        for sym, spec in self.specs.items():
            self._init_market(sym, spec)
        self.balances: dict[str, list[Decimal]] = {}  # asset -> [free, locked]
        start = balances if balances is not None else {"USDT": "100000", "BTC": "1", "ETH": "10", "BNB": "5"}
        for asset, amount in start.items():
            self.balances[asset] = [D(str(amount)), ZERO]
        self.orders: list[Order] = []
        self.orders_received: list[dict] = []
        self.my_trades: list[dict] = []
        self._real_klines: list[list] | None = None
        self.account_update_time = self.clock.now_ms()
        # synthetic candle paths pass through each symbol's initial price at this time; set on the first
        # candle request (freeze the clock first for identical candles across fakes), or set it yourself
        self.kline_anchor_ms: int | None = None

    # -- market state ------------------------------------------------------------------------------
    def _init_market(self, sym: str, spec: SymbolSpec) -> None:
        price = spec.round_price(spec.price)
        tick = spec.tick
        gap = max(tick, spec.round_price(price * D("0.0002")))
        qty = max(spec.step, spec.round_qty(D(2000) / price)) if price > 0 else D(1)
        self.books[sym] = Book(
            bid=price - tick,
            ask=price + tick if price - tick > 0 else price + 2 * tick,
            bid_qty=qty,
            ask_qty=qty,
            gap=gap,
            levels=self.book_levels,
        )
        if self.books[sym].bid <= 0:
            self.books[sym].bid = tick
        open_ = spec.round_price(price * D("0.98"))
        vol = (spec.quote_volume / price).quantize(D("0.00000001")) if price > 0 else ZERO
        self.tickers[sym] = Ticker24(
            open=open_,
            high=max(price, spec.round_price(price * D("1.015"))),
            low=min(open_, spec.round_price(price * D("0.975"))),
            last=price,
            last_qty=qty,
            volume=vol,
            quote_volume=spec.quote_volume,
            count=12345,
        )

    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise BinanceError(-1121, "Invalid symbol.") from None

    def _notify(self, kind: str, symbol: str, payload: object = None) -> None:
        """Queue an event; `_flush()` hands queued events to the listener once the lock is released."""
        self._pending.append((kind, symbol, payload))

    def _flush(self) -> None:
        with self.lock:
            events, self._pending = self._pending, []
        if self.listener is not None:
            for kind, symbol, payload in events:
                self.listener(kind, symbol, payload)

    def set_book(self, symbol: str, bid, ask, bid_qty=None, ask_qty=None) -> None:
        with self.lock:
            book = self.books[symbol]
            book.bid, book.ask = D(str(bid)), D(str(ask))
            if bid_qty is not None:
                book.bid_qty = D(str(bid_qty))
            if ask_qty is not None:
                book.ask_qty = D(str(ask_qty))
            book.update_id += 1
            self._notify("book", symbol)
            self._match_resting(symbol)
        self._flush()

    def set_price(self, symbol: str, price, qty=None) -> None:
        """Move the market: book centred one tick either side of `price`, and a public trade at `price`."""
        with self.lock:
            spec = self.spec(symbol)
            p = D(str(price))
            book = self.books[symbol]
            book.bid, book.ask = p - spec.tick, p + spec.tick
            book.update_id += 1
            self._notify("book", symbol)
            self._match_resting(symbol)
        self._flush()
        self.add_trade(symbol, p, qty if qty is not None else self.books[symbol].bid_qty)

    def add_trade(
        self, symbol: str, price, qty, buyer_maker: bool = False, ts: int | None = None
    ) -> PublicTrade:
        with self.lock:
            t = PublicTrade(
                next(self._trade_ids),
                D(str(price)),
                D(str(qty)),
                self.clock.now_ms() if ts is None else ts,
                buyer_maker,
            )
            self._record_public_trade(symbol, t)
        self._flush()
        return t

    def _record_public_trade(self, symbol: str, t: PublicTrade) -> None:
        self._notify("trade", symbol, t)
        self.trades[symbol].append(t)
        if len(self.trades[symbol]) > 5000:
            del self.trades[symbol][:1000]
        tk = self.tickers[symbol]
        tk.last, tk.last_qty = t.price, t.qty
        tk.high, tk.low = max(tk.high, t.price), min(tk.low, t.price)
        tk.volume += t.qty
        tk.quote_volume += t.qty * t.price
        tk.count += 1

    def set_ticker(self, symbol: str, **fields) -> None:
        """Override 24h statistics: open, high, low, last, volume, quote_volume, count."""
        with self.lock:
            tk = self.tickers[symbol]
            for k, v in fields.items():
                if not hasattr(tk, k):
                    raise AttributeError(k)
                setattr(tk, k, v if k == "count" else D(str(v)))
            self._notify("ticker", symbol)
        self._flush()

    # -- public views --------------------------------------------------------------------------------
    def ticker_24hr(self, symbol: str) -> dict:
        with self.lock:
            spec, tk, book = self.spec(symbol), self.tickers[symbol], self.books[symbol]
            now = self.clock.now_ms()
            change = tk.last - tk.open
            pct = (change / tk.open * 100) if tk.open else ZERO
            wavg = (tk.quote_volume / tk.volume) if tk.volume else tk.last
            ids = self.trades[symbol]
            return {
                "symbol": spec.symbol,
                "priceChange": fmt(change),
                "priceChangePercent": fmt(pct, 3),
                "weightedAvgPrice": fmt(wavg),
                "prevClosePrice": fmt(tk.open),
                "lastPrice": fmt(tk.last),
                "lastQty": fmt(tk.last_qty),
                "bidPrice": fmt(book.bid),
                "bidQty": fmt(book.bid_qty),
                "askPrice": fmt(book.ask),
                "askQty": fmt(book.ask_qty),
                "openPrice": fmt(tk.open),
                "highPrice": fmt(tk.high),
                "lowPrice": fmt(tk.low),
                "volume": fmt(tk.volume),
                "quoteVolume": fmt(tk.quote_volume),
                "openTime": now - 86_400_000,
                "closeTime": now,
                "firstId": ids[0].id if ids else -1,
                "lastId": ids[-1].id if ids else -1,
                "count": tk.count,
            }

    def book_ticker(self, symbol: str) -> dict:
        with self.lock:
            b = self.books[self.spec(symbol).symbol]
            return {
                "symbol": symbol,
                "bidPrice": fmt(b.bid),
                "bidQty": fmt(b.bid_qty),
                "askPrice": fmt(b.ask),
                "askQty": fmt(b.ask_qty),
            }

    def depth(self, symbol: str, limit: int = 100) -> dict:
        with self.lock:
            b = self.books[self.spec(symbol).symbol]
            return {
                "lastUpdateId": b.update_id,
                "bids": [[fmt(p), fmt(q)] for p, q in b.side("bids")[:limit]],
                "asks": [[fmt(p), fmt(q)] for p, q in b.side("asks")[:limit]],
            }

    # -- klines ---------------------------------------------------------------------------------------
    def _load_real_klines(self) -> list[list]:
        if self._real_klines is None:
            rows = []
            with open(self.data_dir / BTCUSDT_1H_CSV, newline="") as f:
                for r in csv.DictReader(f):
                    o, h, low, c, v = (D(r[k]) for k in ("open", "high", "low", "close", "volume"))
                    mid = (o + c) / 2
                    rows.append(
                        [
                            int(r["open_time"]),
                            o,
                            h,
                            low,
                            c,
                            v,
                            int(r["close_time"]),
                            (v * mid).quantize(D("0.00000001")),
                            1000 + int(v) % 5000,
                        ]
                    )
            self._real_klines = rows
        return self._real_klines

    def _synthetic_kline(self, symbol: str, interval: str, open_ms: int, now: int) -> list:
        spec = self.specs[symbol]
        step = INTERVALS_MS[interval]
        base = float(spec.price)

        def g(i: int) -> float:
            return (
                0.03 * math.sin(i / 37.0)
                + 0.012 * math.sin(i / 7.3)
                + 0.004 * (_noise(symbol, interval, i) - 0.5)
            )

        if self.kline_anchor_ms is None:
            self.kline_anchor_ms = now
        g0 = g(
            self.kline_anchor_ms // step
        )  # the path passes through the initial price when the fake started

        def path(i: int) -> float:
            return base * math.exp(g(i) - g0)

        i = open_ms // step
        o, c = path(i), path(i + 1)
        hi = max(o, c) * (1 + 0.002 * _noise(symbol, interval, i, "h"))
        lo = min(o, c) * (1 - 0.002 * _noise(symbol, interval, i, "l"))
        o_, c_, hi_, lo_ = (spec.round_price(D(repr(x))) for x in (o, c, hi, lo))
        close_ms = open_ms + step - 1
        if open_ms <= now <= close_ms:  # the live candle ends at the current last price
            last = self.tickers[symbol].last
            c_, hi_, lo_ = last, max(hi_, last, o_), min(lo_, last, o_)
        vol = spec.round_qty(
            D(
                repr(
                    float(spec.quote_volume)
                    / base
                    / (86_400_000 / step)
                    * (0.5 + _noise(symbol, interval, i, "v"))
                )
            )
        )
        return [
            open_ms,
            o_,
            hi_,
            lo_,
            c_,
            vol,
            close_ms,
            (vol * (o_ + c_) / 2).quantize(D("0.00000001")),
            100 + int(_noise(symbol, interval, i, "n") * 900),
        ]

    def klines(
        self, symbol: str, interval: str, start: int | None = None, end: int | None = None, limit: int = 500
    ) -> list[list]:
        """Binance /api/v3/klines rows. BTCUSDT 1h: the real candles of BTCUSDT-1h.csv (2021-10 .. 2022-10);
        anything else: deterministic synthetic candles aligned to the server clock."""
        with self.lock:
            spec = self.spec(symbol)
            if interval not in INTERVALS_MS:
                raise BinanceError(-1120, "Invalid interval.")
            limit = max(1, min(int(limit), 1000))
            if spec.symbol == "BTCUSDT" and interval == "1h" and self.real_klines:
                rows = self._load_real_klines()
                if start is not None:
                    lo = bisect.bisect_left(rows, start, key=lambda r: r[0])
                    sel = rows[lo : lo + limit]
                    if end is not None:
                        sel = [r for r in sel if r[0] <= end]
                elif end is not None:
                    hi = bisect.bisect_right(rows, end, key=lambda r: r[0])
                    sel = rows[max(0, hi - limit) : hi]
                else:
                    sel = rows[-limit:]
            else:
                step = INTERVALS_MS[interval]
                now = self.clock.now_ms()
                last_open = (min(end, now) if end is not None else now) // step * step
                if start is not None:
                    first = -(-start // step) * step
                    opens = list(range(first, min(last_open, first + (limit - 1) * step) + 1, step))
                else:
                    opens = list(range(last_open - (limit - 1) * step, last_open + 1, step))
                sel = [self._synthetic_kline(spec.symbol, interval, t, now) for t in opens if t <= now]
            return [self._kline_row(r) for r in sel]

    @staticmethod
    def _kline_row(r: list) -> list:
        vol, qv = r[5], r[7]
        return [
            r[0],
            fmt(r[1]),
            fmt(r[2]),
            fmt(r[3]),
            fmt(r[4]),
            fmt(vol),
            r[6],
            fmt(qv),
            r[8],
            fmt((vol / 2).quantize(D("0.00000001"))),
            fmt((qv / 2).quantize(D("0.00000001"))),
            "0",
        ]

    def live_kline(self, symbol: str, interval: str) -> list:
        """The candle containing 'now' as raw values (for the kline stream)."""
        with self.lock:
            now = self.clock.now_ms()
            step = INTERVALS_MS[interval]
            return self._synthetic_kline(symbol, interval, now // step * step, now)

    # -- account -------------------------------------------------------------------------------------
    def set_balance(self, asset: str, free, locked=0) -> None:
        with self.lock:
            self.balances[asset] = [D(str(free)), D(str(locked))]
            self.account_update_time = self.clock.now_ms()

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        with self.lock:
            f, lk = self.balances.get(asset, [ZERO, ZERO])
            return f, lk

    def account(self) -> dict:
        with self.lock:
            return {
                "makerCommission": 10,
                "takerCommission": 10,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": "0.00100000",
                    "taker": "0.00100000",
                    "buyer": "0.00000000",
                    "seller": "0.00000000",
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": self.account_update_time,
                "accountType": "SPOT",
                "balances": [
                    {"asset": a, "free": fmt(f), "locked": fmt(lk)} for a, (f, lk) in self.balances.items()
                ],
                "permissions": ["SPOT"],
                "uid": 354937868,
            }

    def _bal(self, asset: str) -> list[Decimal]:
        return self.balances.setdefault(asset, [ZERO, ZERO])

    def _lock_funds(self, asset: str, amount: Decimal) -> None:
        b = self._bal(asset)
        if amount > b[0]:
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        b[0] -= amount
        b[1] += amount

    # -- orders --------------------------------------------------------------------------------------
    def find_order(self, symbol: str, order_id: int | None = None, client_id: str | None = None) -> Order:
        with self.lock:
            for o in reversed(self.orders):
                if o.symbol != symbol:
                    continue
                if (order_id is not None and o.order_id == order_id) or (
                    order_id is None and client_id is not None and o.client_order_id == client_id
                ):
                    return o
            raise BinanceError(-2013, "Order does not exist.")

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        with self.lock:
            return [o for o in self.orders if o.is_open and (symbol is None or o.symbol == symbol)]

    def _check_filters(
        self,
        spec: SymbolSpec,
        otype: str,
        price: Decimal | None,
        qty: Decimal,
        ref_price: Decimal,
        side: str = "BUY",
    ) -> None:
        f = spec.filters

        def fail(name: str) -> BinanceError:
            return BinanceError(-1013, f"Filter failure: {name}")

        pf = f.get("PRICE_FILTER")
        if price is not None and pf:
            mn, mx, tick = D(pf["minPrice"]), D(pf["maxPrice"]), D(pf["tickSize"])
            if (mn > 0 and price < mn) or (mx > 0 and price > mx) or (tick > 0 and (price - mn) % tick != 0):
                raise fail("PRICE_FILTER")
        lots = [f.get("LOT_SIZE")] + ([f.get("MARKET_LOT_SIZE")] if otype == "MARKET" else [])
        for name, lf in zip(("LOT_SIZE", "MARKET_LOT_SIZE"), lots, strict=False):
            if not lf:
                continue
            mn, mx, step = D(lf["minQty"]), D(lf["maxQty"]), D(lf["stepSize"])
            if (qty < mn) or (mx > 0 and qty > mx) or (step > 0 and (qty - mn) % step != 0):
                raise fail(name)
        notional = (price if price is not None else ref_price) * qty
        nf = f.get("NOTIONAL")
        if nf:
            if (otype != "MARKET" or nf.get("applyMinToMarket", True)) and notional < D(nf["minNotional"]):
                raise fail("NOTIONAL")
            if (otype != "MARKET" or nf.get("applyMaxToMarket", False)) and notional > D(nf["maxNotional"]):
                raise fail("NOTIONAL")
        mnf = f.get("MIN_NOTIONAL")
        if mnf and (otype != "MARKET" or mnf.get("applyToMarket", True)) and notional < D(mnf["minNotional"]):
            raise fail("MIN_NOTIONAL")
        pp = f.get("PERCENT_PRICE_BY_SIDE")
        if pp and price is not None and otype != "MARKET":
            up, down = (
                ("bidMultiplierUp", "bidMultiplierDown")
                if side == "BUY"
                else ("askMultiplierUp", "askMultiplierDown")
            )
            if price > ref_price * D(pp[up]) or price < ref_price * D(pp[down]):
                raise fail("PERCENT_PRICE_BY_SIDE")
        mno = f.get("MAX_NUM_ORDERS")
        if mno and otype != "MARKET" and len(self.open_orders(spec.symbol)) >= int(mno["maxNumOrders"]):
            raise fail("MAX_NUM_ORDERS")

    def _walk(
        self, symbol: str, side: str, qty: Decimal, limit_price: Decimal | None
    ) -> list[tuple[Decimal, Decimal]]:
        """Taker fills for `qty` against the opposite side, best first, not beyond `limit_price`."""
        levels = self.books[symbol].side("asks" if side == "BUY" else "bids")
        out, left = [], qty
        for p, q in levels:
            if left <= 0:
                break
            if limit_price is not None and (
                (side == "BUY" and p > limit_price) or (side == "SELL" and p < limit_price)
            ):
                break
            take = min(left, q)
            out.append((p, take))
            left -= take
        return out

    def place_order(self, p: dict[str, str]) -> Order:
        """POST /api/v3/order after auth. Records the request in `orders_received` first."""
        with self.lock:
            self.orders_received.append(dict(p))
            symbol = p.get("symbol") or ""
            if not symbol:
                raise mandatory("symbol")
            spec = self.spec(symbol)
            side, otype = p.get("side", ""), p.get("type", "")
            if side not in ("BUY", "SELL"):
                raise mandatory("side")
            if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
                raise BinanceError(-1116, "Invalid orderType.")
            if spec.status != "TRADING":
                raise BinanceError(-1013, "Market is closed.")
            cid = p.get("newClientOrderId") or ("x-" + secrets.token_hex(10))
            if not CLIENT_ID_RE.match(cid):
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'newClientOrderId'; legal range "
                    "is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
                )
            if any(o.is_open and o.client_order_id == cid for o in self.orders):
                raise BinanceError(-2010, "Duplicate order sent.")
            tif = p.get("timeInForce", "GTC" if otype != "MARKET" else "")
            price = None
            if otype in ("LIMIT", "LIMIT_MAKER"):
                if otype == "LIMIT" and not p.get("timeInForce"):
                    raise mandatory("timeInForce")
                if tif not in ("GTC", "IOC", "FOK"):
                    raise BinanceError(-1115, "Invalid timeInForce.")
                if not p.get("price"):
                    raise mandatory("price")
                price = decimal_param(p, "price")
                if otype == "LIMIT_MAKER":
                    tif = "GTC"
            book = self.books[symbol]
            ref = book.ask if side == "BUY" else book.bid
            quote_qty = (
                decimal_param(p, "quoteOrderQty") if otype == "MARKET" and p.get("quoteOrderQty") else None
            )
            if p.get("quantity"):
                qty = decimal_param(p, "quantity")
            elif quote_qty is not None:
                qty = spec.round_qty(quote_qty / ref)
            else:
                raise mandatory("quantity")
            if qty <= 0 or (price is not None and price <= 0):
                raise BinanceError(-1013, "Invalid quantity." if qty <= 0 else "Invalid price.")
            self._check_filters(spec, otype, price, qty, (book.bid + book.ask) / 2, side)
            fills = self._walk(symbol, side, qty, price)
            if otype == "LIMIT_MAKER" and fills:
                raise BinanceError(-2010, "Order would immediately match and take.")
            if tif == "FOK" and sum(q for _, q in fills) < qty:
                fills = []
            # funds: a buy locks quote (limit: at its price; market: the cost of the walk), a sell locks base
            if side == "BUY":
                lock_asset = spec.quote
                lock = price * qty if price is not None else sum(fp * fq for fp, fq in fills)
            else:
                lock_asset, lock = spec.base, qty
            self._lock_funds(lock_asset, lock)
            now = self.clock.now_ms()
            order = Order(
                order_id=next(self._order_ids),
                client_order_id=cid,
                symbol=symbol,
                side=side,
                type=otype,
                time_in_force=tif,
                price=price if price is not None else ZERO,
                orig_qty=qty,
                time=now,
                update_time=now,
                lock_asset=lock_asset,
                locked=lock,
                orig_quote_qty=quote_qty or ZERO,
            )
            self.orders.append(order)
            self._report(order, "NEW")
            for fp, fq in fills:
                self._fill(order, fp, fq, maker=False)
            if order.is_open and (otype == "MARKET" or tif in ("IOC", "FOK")):
                order.status = "EXPIRED"
                self._release(order)
                self._report(order, "EXPIRED")
            self.account_update_time = now
            self._account_event(spec)
        self._flush()
        return order

    def _fill(self, order: Order, price: Decimal, qty: Decimal, maker: bool) -> None:
        spec = self.specs[order.symbol]
        now = self.clock.now_ms()
        cost = price * qty
        trade_id = next(self._trade_ids)
        if order.side == "BUY":
            spend = cost
            release = (order.price * qty) if order.type != "MARKET" else cost
            quote = self._bal(spec.quote)
            quote[1] -= release
            quote[0] += release - spend
            order.locked -= release
            commission = (qty * FEE_RATE).quantize(D("0.00000001"), rounding=ROUND_DOWN)
            self._bal(spec.base)[0] += qty - commission
            fee_asset = spec.base
        else:
            base = self._bal(spec.base)
            base[1] -= qty
            order.locked -= qty
            commission = (cost * FEE_RATE).quantize(D("0.00000001"), rounding=ROUND_DOWN)
            self._bal(spec.quote)[0] += cost - commission
            fee_asset = spec.quote
        order.executed_qty += qty
        order.cum_quote += cost
        order.update_time = now
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._release(order)
        order.fills.append(Fill(trade_id, price, qty, commission, fee_asset, now, maker))
        self.my_trades.append(
            {
                "symbol": order.symbol,
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "price": fmt(price),
                "qty": fmt(qty),
                "quoteQty": fmt(cost),
                "commission": fmt(commission),
                "commissionAsset": fee_asset,
                "time": now,
                "isBuyer": order.side == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )
        self._record_public_trade(order.symbol, PublicTrade(trade_id, price, qty, now, order.side == "SELL"))
        self._report(order, "TRADE", order.fills[-1])

    def _report(self, o: Order, exec_type: str, fill: Fill | None = None) -> None:
        """Queue a user-data `executionReport` (a snapshot: the order keeps changing after this)."""
        self._notify(
            "order",
            o.symbol,
            {
                "e": "executionReport",
                "s": o.symbol,
                "c": o.client_order_id,
                "S": o.side,
                "o": o.type,
                "f": o.time_in_force or "GTC",
                "q": fmt(o.orig_qty),
                "p": fmt(o.price),
                "P": fmt(ZERO),
                "F": fmt(ZERO),
                "g": -1,
                "C": o.client_order_id if exec_type == "CANCELED" else "",
                "x": exec_type,
                "X": o.status,
                "r": "NONE",
                "i": o.order_id,
                "l": fmt(fill.qty if fill else ZERO),
                "z": fmt(o.executed_qty),
                "L": fmt(fill.price if fill else ZERO),
                "n": fmt(fill.commission if fill else ZERO),
                "N": fill.commission_asset if fill else None,
                "T": fill.time if fill else o.update_time,
                "t": fill.trade_id if fill else -1,
                "I": 0,
                "w": o.is_open,
                "m": bool(fill and fill.maker),
                "M": False,
                "O": o.time,
                "Z": fmt(o.cum_quote),
                "Y": fmt(fill.price * fill.qty if fill else ZERO),
                "Q": fmt(o.orig_quote_qty),
                "W": o.time,
                "V": "EXPIRE_MAKER",
            },
        )

    def _account_event(self, spec: SymbolSpec) -> None:
        """Queue a user-data `outboundAccountPosition` for the two assets of a symbol."""
        self._notify(
            "account",
            spec.symbol,
            {
                "e": "outboundAccountPosition",
                "u": self.clock.now_ms(),
                "B": [
                    {"a": a, "f": fmt(self._bal(a)[0]), "l": fmt(self._bal(a)[1])}
                    for a in (spec.base, spec.quote)
                ],
            },
        )

    def _release(self, order: Order) -> None:
        if order.locked > 0:
            b = self._bal(order.lock_asset)
            b[1] -= order.locked
            b[0] += order.locked
            order.locked = ZERO

    def _match_resting(self, symbol: str) -> None:
        """Resting limit orders that the new book crosses fill at their own price, up to the top size."""
        book = self.books[symbol]
        avail = {"BUY": book.ask_qty, "SELL": book.bid_qty}
        filled = False
        for o in self.orders:
            if not (o.is_open and o.symbol == symbol):
                continue
            crossed = (o.side == "BUY" and book.ask <= o.price) or (o.side == "SELL" and book.bid >= o.price)
            if crossed and avail[o.side] > 0:
                q = min(o.remaining, avail[o.side])
                avail[o.side] -= q
                self._fill(o, o.price, q, maker=True)
                filled = True
        if filled:
            self.account_update_time = self.clock.now_ms()
            self._account_event(self.specs[symbol])

    def cancel_order(self, symbol: str, order_id: int | None, client_id: str | None) -> Order:
        with self.lock:
            try:
                o = self.find_order(symbol, order_id, client_id)
            except BinanceError:
                raise BinanceError(-2011, "Unknown order sent.") from None
            if not o.is_open:
                raise BinanceError(-2011, "Unknown order sent.")
            o.status = "CANCELED"
            o.update_time = self.clock.now_ms()
            self._release(o)
            self.account_update_time = o.update_time
            self._report(o, "CANCELED")
            self._account_event(self.specs[symbol])
        self._flush()
        return o

    def trades_for(self, symbol: str, order_id: int | None = None) -> list[dict]:
        with self.lock:
            return [
                t
                for t in self.my_trades
                if t["symbol"] == symbol and (order_id is None or t["orderId"] == order_id)
            ]

    # -- inspection helpers for tests -------------------------------------------------------------------
    def orders_for(self, client_order_id: str) -> list[Order]:
        with self.lock:
            return [o for o in self.orders if o.client_order_id == client_order_id]

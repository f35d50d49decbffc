"""Seeded synthetic market (pure core): correlated returns, switching volatility regimes, jumps, spread, volume.

One `step()` advances every symbol by one tick. The sequence of prices and volumes depends only on the
seed, the symbols and the model parameters, never on the wall clock: event times are passed in by the
caller. Model per step, for symbol i:

    r_i = sigma * m_regime * (sqrt(rho) * z_common + sqrt(1 - rho) * z_i) + jump_i
    jump_i ~ Bernoulli(jump_prob) * Normal(0, jump_bps)

The regime (calm / volatile) is market-wide and flips with `regime_switch_prob` per step; the
volatile regime multiplies volatility, widens the spread and lifts volumes. Prices are rounded to a
per-symbol tick size (bid rounded down, ask up, never crossed).
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from libs.common.contracts import Tick
from libs.common.contracts.market import TickSource
from libs.common.settings.market_data import SyntheticSettings

BASE_PRICES = {
    "BTC": 60000.0,
    "ETH": 3000.0,
    "SOL": 150.0,
    "BNB": 550.0,
    "XRP": 0.6,
    "ADA": 0.45,
    "DOGE": 0.12,
    "LTC": 80.0,
    "TRX": 0.11,
}
CALM, VOLATILE = 0, 1


def synthetic_symbols(symbols: list[str], count: int) -> list[str]:
    """`symbols`, then generated `SYN001/USDT`... up to `count` (0 = just `symbols`)."""
    out = list(dict.fromkeys(symbols))
    i = 1
    while len(out) < count:
        name = f"SYN{i:03d}/USDT"
        if name not in out:
            out.append(name)
        i += 1
    return out


def price_decimals(price: float) -> int:
    """Decimal places of a plausible tick size: ~6 significant digits, between 2 and 8 places."""
    return int(min(8, max(2, 5 - math.floor(math.log10(price)))))


class Quote(NamedTuple):
    """One symbol's tick from a step, as exact decimal strings (ready for the wire) and floats."""

    symbol: str
    bid: str
    ask: str
    last: str
    volume: str
    last_f: float
    volume_f: float


class SyntheticMarket:
    """Same seed, symbols and params: the same sequence of quotes."""

    def __init__(self, symbols: list[str], seed: int = 42, params: SyntheticSettings | None = None):
        if not symbols:
            raise ValueError("at least one symbol")
        self.symbols = list(symbols)
        self.params = params if params is not None else SyntheticSettings()
        self._rng = np.random.Generator(np.random.PCG64(seed))
        init = np.array([BASE_PRICES.get(s.split("/")[0], 0.0) for s in self.symbols])
        fill = 10 ** self._rng.uniform(-1, 3, len(self.symbols))  # 0.1 .. 1000 for unknown bases
        self._log_price = np.log(np.where(init > 0, init, fill))
        self._decimals = [price_decimals(float(p)) for p in np.exp(self._log_price)]
        self._tick = np.array([10.0**-d for d in self._decimals])
        self._fmt = [f"{{:.{d}f}}" for d in self._decimals]
        # typical base volume per tick worth ~ 500 USDT, per symbol
        self._vol_scale = 500.0 / np.exp(self._log_price)
        self.regime = CALM
        self.steps = 0

    def step(self) -> list[Quote]:
        """Advance every symbol by one tick."""
        p, rng, n = self.params, self._rng, len(self.symbols)
        if rng.random() < p.regime_switch_prob:
            self.regime = VOLATILE if self.regime == CALM else CALM
        mult = p.volatile_multiplier if self.regime == VOLATILE else 1.0
        sigma = p.vol_bps_per_tick * 1e-4 * mult
        z = rng.standard_normal(n + 1)
        r = sigma * (math.sqrt(p.correlation) * z[0] + math.sqrt(1.0 - p.correlation) * z[1:])
        jumps = rng.random(n) < p.jump_prob
        if jumps.any():
            r = r + jumps * rng.standard_normal(n) * (p.jump_bps * 1e-4)
        self._log_price += r
        mid = np.exp(self._log_price)
        half = mid * (p.spread_bps * 1e-4 * (2.0 if self.regime == VOLATILE else 1.0)) / 2.0
        tick = self._tick
        bid = np.maximum(np.floor((mid - half) / tick) * tick, tick)
        ask = np.maximum(np.ceil((mid + half) / tick) * tick, bid + tick)
        buyer = rng.random(n) < 0.5
        last = np.where(buyer, ask, bid)
        volume = self._vol_scale * rng.lognormal(0.0, 1.0, n) * (2.0 if self.regime == VOLATILE else 1.0)
        self.steps += 1
        out = []
        bl, al, ll, vl = bid.tolist(), ask.tolist(), last.tolist(), volume.tolist()
        for i, sym in enumerate(self.symbols):
            f = self._fmt[i]
            out.append(
                Quote(sym, f.format(bl[i]), f.format(al[i]), f.format(ll[i]), f"{vl[i]:.6f}", ll[i], vl[i])
            )
        return out

    def ticks(self, now: datetime) -> list[Tick]:
        """One step as contract objects (the readable path; the shell uses the fast encoder)."""
        return [quote_to_tick(q, now) for q in self.step()]


def quote_to_tick(q: Quote, now: datetime, source: TickSource = "synthetic") -> Tick:
    return Tick(
        ts=now,
        symbol=q.symbol,
        bid=Decimal(q.bid),
        ask=Decimal(q.ask),
        last=Decimal(q.last),
        volume=Decimal(q.volume),
        source=source,
    )

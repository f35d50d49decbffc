"""Seeded synthetic ticks: a reproducible random walk per symbol with a spread and volumes (pure core)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from libs.common.contracts import Tick

BASE_PRICES = {"BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "ADA": 0.45}


@dataclass
class _Walk:
    price: float
    vol_per_tick: float


class SyntheticTicks:
    """Same seed and symbols, same sequence of ticks. Time is passed in by the caller."""

    def __init__(self, symbols: list[str], seed: int = 42, vol_per_tick: float = 0.0005, spread_bps: float = 1.0):
        self._rng = random.Random(seed)
        self._spread = spread_bps / 10_000
        self._walks = {
            s: _Walk(price=BASE_PRICES.get(s.split("/")[0], 10.0 + 90 * self._rng.random()), vol_per_tick=vol_per_tick)
            for s in symbols
        }

    def next(self, symbol: str, now: datetime) -> Tick:
        w = self._walks[symbol]
        w.price *= math.exp(self._rng.gauss(0.0, w.vol_per_tick))
        half = w.price * self._spread / 2
        last = _q(w.price)
        return Tick(ts=now, symbol=symbol, bid=_q(w.price - half), ask=_q(w.price + half), last=last,
                    volume=_q(abs(self._rng.gauss(0.0, 1.0)) * 1000 / w.price, 6), source="synthetic")


def _q(x: float, places: int = 8) -> Decimal:
    return Decimal(f"{x:.{places}f}")

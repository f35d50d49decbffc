"""Realized-volatility ratio (pure): short-window over long-window EWMA of sampled log returns, per symbol.

Prices are sampled at most once per `sample_s` (so a burst of ticks does not weigh more than a quiet
spell); the ratio exists only after `min_samples` returns. The market ratio is the highest of the symbols'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime


@dataclass
class _Ewma:
    last_price: float | None = None
    last_sample: datetime | None = None
    var_short: float = 0.0
    var_long: float = 0.0
    n: int = 0


class VolatilityRatio:
    def __init__(self, sample_s: float, short_samples: int, long_samples: int, min_samples: int):
        self.sample_s = sample_s
        self.a_short = 2.0 / (short_samples + 1)
        self.a_long = 2.0 / (long_samples + 1)
        self.min_samples = min_samples
        self._s: dict[str, _Ewma] = {}

    def on_price(self, symbol: str, price: float, now: datetime) -> None:
        st = self._s.setdefault(symbol, _Ewma())
        if st.last_sample is not None and (now - st.last_sample).total_seconds() < self.sample_s:
            return
        if st.last_price is not None and price > 0 and st.last_price > 0:
            r2 = math.log(price / st.last_price) ** 2
            if st.n == 0:
                st.var_short = st.var_long = r2
            else:
                st.var_short += self.a_short * (r2 - st.var_short)
                st.var_long += self.a_long * (r2 - st.var_long)
            st.n += 1
        st.last_price, st.last_sample = price, now

    def ratio(self, symbol: str) -> float | None:
        st = self._s.get(symbol)
        if st is None or st.n < self.min_samples:
            return None
        if st.var_long <= 0:
            return 1.0 if st.var_short <= 0 else math.inf
        return math.sqrt(st.var_short / st.var_long)

    def market_ratio(self) -> float | None:
        ratios = [r for r in (self.ratio(s) for s in self._s) if r is not None]
        return max(ratios) if ratios else None

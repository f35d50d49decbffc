"""Realized-volatility ratio (pure): short-window over long-window EWMA of sampled log returns, per symbol.

Prices are sampled at most once per `sample_s` (so a burst of ticks does not weigh more than a quiet
spell); the ratio exists only after `min_samples` returns. The market ratio is the highest of the symbols'.
Times are kept as integer microseconds since the epoch: `(t - last) / 10**6` is exactly the
`timedelta.total_seconds()` of the two datetimes (both divide the same integer, correctly rounded), and a run
of bars (`take_bars`) is sampled without a datetime per tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_US_PER_S = 1_000_000


def epoch_us(now: datetime) -> int:
    """`now` as integer microseconds since the epoch (exact)."""
    return (now - EPOCH) // _US


@dataclass
class _Ewma:
    last_price: float | None = None
    last_sample_us: int | None = None
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
        st = self._s.get(symbol)
        if st is None:
            st = self._s[symbol] = _Ewma()
        self._sample(st, price, epoch_us(now))

    def _sample(self, st: _Ewma, price: float, t_us: int) -> None:
        """The one sampling rule: at most one sample per `sample_s`, a log return once a price is known."""
        if st.last_sample_us is not None and (t_us - st.last_sample_us) / _US_PER_S < self.sample_s:
            return
        if st.last_price is not None and price > 0 and st.last_price > 0:
            r2 = math.log(price / st.last_price) ** 2
            if st.n == 0:
                st.var_short = st.var_long = r2
            else:
                st.var_short += self.a_short * (r2 - st.var_short)
                st.var_long += self.a_long * (r2 - st.var_long)
            st.n += 1
        st.last_price, st.last_sample_us = price, t_us

    def ratio(self, symbol: str) -> float | None:
        st = self._s.get(symbol)
        return None if st is None else self._ratio(st)

    def _ratio(self, st: _Ewma) -> float | None:
        if st.n < self.min_samples:
            return None
        if st.var_long <= 0:
            return 1.0 if st.var_short <= 0 else math.inf
        return math.sqrt(st.var_short / st.var_long)

    def market_ratio(self) -> float | None:
        ratios = [r for r in (self._ratio(st) for st in self._s.values()) if r is not None]
        return max(ratios) if ratios else None

    def take_bars(
        self,
        symbols: Sequence[str],
        rows_ms: Sequence[Sequence[int]],
        rows_price: Sequence[Sequence[float]],
        allow: Callable[[int, float | None], bool],
    ) -> int:
        """Sample bars of ticks in turn, as `on_price` tick by tick would, while `allow(j, market ratio after bar
        j)` says yes: bar j is column c of `rows_ms[j]` (epoch ms) and `rows_price[j]` a tick of `symbols[c]`.
        The first bar refused is put back as it was before it; returns how many bars were taken."""
        new = [sym for sym in dict.fromkeys(symbols) if sym not in self._s]
        states = [self._s.get(sym) or self._s.setdefault(sym, _Ewma()) for sym in symbols]
        distinct = list({id(st): st for st in states}.values())
        every = list(self._s.values())
        sample, ratio = self._sample, self._ratio
        for j, (row_t, row_p) in enumerate(zip(rows_ms, rows_price, strict=True)):
            before = [(st.last_price, st.last_sample_us, st.var_short, st.var_long, st.n) for st in distinct]
            for st, t, p in zip(states, row_t, row_p, strict=True):
                sample(st, p, t * 1000)
            ratios = [r for r in map(ratio, every) if r is not None]
            if not allow(j, max(ratios) if ratios else None):
                for st, saved in zip(distinct, before, strict=True):
                    st.last_price, st.last_sample_us, st.var_short, st.var_long, st.n = saved
                if j == 0:  # nothing taken: no symbol is new to the ratio either
                    for sym in new:
                        del self._s[sym]
                return j
        return len(rows_ms)

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

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_US_PER_S = 1_000_000


def epoch_us(now: datetime) -> int:
    """`now` as integer microseconds since the epoch (exact)."""
    return (now - EPOCH) // _US


# a symbol's sampling state: (last price, last sample's time in µs, short variance, long variance, returns)
State = tuple[float | None, int | None, float, float, int]
BLOCK_BARS = 256  # `take_bars` samples this many bars ahead of its caller's verdicts


@dataclass
class _Ewma:
    last_price: float | None = None
    last_sample_us: int | None = None
    var_short: float = 0.0
    var_long: float = 0.0
    n: int = 0

    def get(self) -> State:
        return (self.last_price, self.last_sample_us, self.var_short, self.var_long, self.n)

    def put(self, state: State) -> None:
        self.last_price, self.last_sample_us, self.var_short, self.var_long, self.n = state


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
        self._walk(st, (epoch_us(now),), (price,), 0)  # 0: no state kept per bar

    def _walk(self, st: _Ewma, times_us: Sequence[int], prices: Sequence[float], every: int) -> list[State]:
        """The one sampling rule, over ticks of one symbol in time order: at most one sample per `sample_s`, a
        log return once a price is known, the two EWMAs of its square. Leaves `st` after the last tick and
        returns the state after every `every` ticks (a bar's; none for 0)."""
        last_p, last_t, vs, vl, n = st.last_price, st.last_sample_us, st.var_short, st.var_long, st.n
        sample_s, a_s, a_l, log = self.sample_s, self.a_short, self.a_long, math.log
        out: list[State] = []
        left = every
        for t, p in zip(times_us, prices, strict=True):
            if last_t is None or not (t - last_t) / _US_PER_S < sample_s:
                if last_p is not None and p > 0 and last_p > 0:
                    r2 = log(p / last_p) ** 2
                    if n == 0:
                        vs = vl = r2
                    else:
                        vs += a_s * (r2 - vs)
                        vl += a_l * (r2 - vl)
                    n += 1
                last_p, last_t = p, t
            left -= 1
            if not left:
                out.append((last_p, last_t, vs, vl, n))
                left = every
        st.last_price, st.last_sample_us, st.var_short, st.var_long, st.n = last_p, last_t, vs, vl, n
        return out

    def ratio(self, symbol: str) -> float | None:
        st = self._s.get(symbol)
        return None if st is None else self._ratio(st.get())

    def _ratio(self, state: State) -> float | None:
        _, _, var_short, var_long, n = state
        if n < self.min_samples:
            return None
        if var_long <= 0:
            return 1.0 if var_short <= 0 else math.inf
        return math.sqrt(var_short / var_long)

    def market_ratio(self) -> float | None:
        ratios = [r for r in (self._ratio(st.get()) for st in self._s.values()) if r is not None]
        return max(ratios) if ratios else None

    def take_bars(
        self,
        symbols: Sequence[str],
        times_ms: np.ndarray,
        prices: np.ndarray,
        allow: Callable[[int, float | None], bool],
    ) -> int:
        """Sample bars of ticks in turn, as `on_price` tick by tick would, while `allow(j, market ratio after bar
        j)` says yes: bar j is column c of `times_ms[j]` (epoch ms, int64) and `prices[j]` a tick of `symbols[c]`.
        The first bar refused is put back as it was before it; returns how many bars were taken. Each symbol's
        ticks are its own (its state reads no other's), so they are sampled a block of bars at a time, symbol
        by symbol, and the market ratio formed at each bar's end from the states there."""
        cols = {sym: [c for c, s in enumerate(symbols) if s == sym] for sym in dict.fromkeys(symbols)}
        new = [sym for sym in cols if sym not in self._s]
        states = {sym: self._s.get(sym) or self._s.setdefault(sym, _Ewma()) for sym in cols}
        # the symbols not ticking here: their ratios stay as they are through the run
        fixed = [
            r for sym, st in self._s.items() if sym not in cols and (r := self._ratio(st.get())) is not None
        ]
        ratio = self._ratio
        before = {sym: st.get() for sym, st in states.items()}  # the states after the last bar taken
        m = len(times_ms)
        for lo in range(0, m, BLOCK_BARS):
            hi = min(m, lo + BLOCK_BARS)
            ends = [  # a symbol's ticks of the block, bar by bar (its columns of each row, in order)
                self._walk(
                    st,
                    (times_ms[lo:hi, cols[sym]] * 1000).ravel().tolist(),
                    prices[lo:hi, cols[sym]].ravel().tolist(),
                    len(cols[sym]),
                )
                for sym, st in states.items()
            ]
            for j in range(lo, hi):
                ratios = fixed + [r for e in ends if (r := ratio(e[j - lo])) is not None]
                if not allow(j, max(ratios) if ratios else None):
                    for (sym, st), e in zip(states.items(), ends, strict=True):
                        st.put(e[j - lo - 1] if j > lo else before[sym])
                    if j == 0:  # nothing taken: no symbol is new to the ratio either
                        for sym in new:
                            del self._s[sym]
                    return j
            before = {sym: e[-1] for sym, e in zip(states, ends, strict=True)}
        return m

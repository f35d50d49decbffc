"""The whole-series replay path (`path_arrays`) and the close alone (`bar_path_last`) are `bar_path`'s own
ticks: the same times and prices on random bars, bullish, bearish and flat, at several precisions."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import pytest

from services.market_data.candles import Bar
from services.market_data.replay import bar_path, bar_path_last, path_arrays

TF = 60_000


def _bars(seed: int, places: int, n: int = 400) -> list[Bar]:
    rng = random.Random(seed)
    out, t, price = [], 1_700_000_000_000, 100.0
    for _ in range(n):
        o = round(price, places)
        c = round(o * (1 + rng.gauss(0, 0.01)) if rng.random() < 0.9 else o, places)
        h = round(max(o, c) * (1 + abs(rng.gauss(0, 0.004))), places)
        lo = round(min(o, c) * (1 - abs(rng.gauss(0, 0.004))), places)
        v = round(rng.random() * 10, 4)
        d = [Decimal(repr(x)) for x in (o, h, lo, c, v)]
        out.append(Bar("BTC/USDT", "1m", t, t + TF - 1, *d))
        t, price = t + TF, max(c, 10**-places * 10)
    return out


@pytest.mark.parametrize(("seed", "places"), [(1, 2), (2, 4), (3, 0), (4, 6)])
@pytest.mark.parametrize("n_ticks", [4, 1])
def test_path_arrays_are_bar_paths_times_and_prices(seed, places, n_ticks):
    bars = _bars(seed, places)
    ohlc = np.array([[float(b.open), float(b.high), float(b.low), float(b.close)] for b in bars])
    times, prices = path_arrays(
        np.array([b.open_time_ms for b in bars]), np.array([b.close_time_ms for b in bars]), ohlc, n_ticks
    )
    ups = downs = 0
    for i, b in enumerate(bars):
        path = bar_path(b, n_ticks, Decimal("1.5"), places)
        assert times[i].tolist() == [p.ts_ms for p in path]
        assert prices[i].tolist() == [float(p.last_d) for p in path]
        ups += b.close > b.open
        downs += b.close < b.open
    assert ups > 50 and downs > 50  # both orders of the extremes were compared


@pytest.mark.parametrize("places", [2, 5])
def test_bar_path_last_is_the_paths_close(places):
    for b in _bars(7, places, 200):
        for spread in (Decimal("1"), Decimal("0.3"), Decimal("40")):
            assert bar_path_last(b, 4, spread, places) == bar_path(b, 4, spread, places)[-1]
            assert bar_path_last(b, 1, spread, places) == bar_path(b, 1, spread, places)[-1]

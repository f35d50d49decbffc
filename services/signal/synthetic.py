"""Seeded synthetic candles to train on when no market file is given (pure core).

A random walk with switching volatility regimes, occasional jumps and volume that rises with volatility.
It has no directional edge by design: a model trained on it can learn *how far* prices may move (volatility
clusters), not *which way*, which is what an honest demo model should know.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from services.signal.features import timeframe_seconds

# Bar volatility regimes (log-return std per bar): calm, normal, busy. Around the synthetic tick feed's
# ~20 bps per 1 s candle.
REGIMES = (0.0010, 0.0022, 0.0045)


def synthetic_candles(n: int, seed: int = 7, timeframe: str = "1s", start_price: float = 100.0,
                      start: datetime | None = None) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    regime = np.empty(n, dtype=np.int64)
    r = 1
    for i in range(n):
        if rng.random() < 0.01:  # mean regime length ~100 bars
            r = int(rng.integers(0, len(REGIMES)))
        regime[i] = r
    sigma = np.asarray(REGIMES)[regime]
    ret = rng.standard_normal(n) * sigma
    jumps = rng.random(n) < 0.002
    ret[jumps] += rng.standard_normal(int(jumps.sum())) * 0.02
    close = start_price * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick = np.abs(rng.standard_normal((2, n))) * sigma * 0.5
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.exp(rng.standard_normal(n) * 0.4) * (sigma / REGIMES[1]) * 50.0
    t0 = start or datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=timeframe_seconds(timeframe))
    times = [t0 + i * step for i in range(n)]
    return pl.DataFrame({"open_time": times, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})

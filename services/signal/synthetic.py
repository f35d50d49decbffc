"""Seeded synthetic candles to train on when no market file is given (pure core).

A driftless random walk with two volatility regimes that switch (calm / volatile, ~25 bars each), occasional
jumps, and volume that rises with volatility; by default the second half mirrors the first (returns negated)
so a finite sample carries no up/down bias. It has no directional edge by design: a model trained on it can
learn *how far* prices may move (volatility clusters), not *which way*, which is what an honest demo model
should know. The levels sit near the synthetic tick feed's 1 s candles (3 bps per tick at 20 ticks/s).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from services.signal.features import timeframe_seconds

REGIMES = (0.0013, 0.0040)  # log-return std per bar: calm, volatile
SWITCH_PROB = 0.04  # per bar
JUMP_PROB, JUMP_SIZE = 0.01, 0.015


def synthetic_candles(
    n: int,
    seed: int = 7,
    timeframe: str = "1s",
    start_price: float = 100.0,
    start: datetime | None = None,
    mirrored: bool = True,
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    half = (n + 1) // 2 if mirrored else n
    regime = np.empty(half, dtype=np.int64)
    r = 0
    for i in range(half):
        if rng.random() < SWITCH_PROB:
            r = 1 - r
        regime[i] = r
    sigma = np.asarray(REGIMES)[regime]
    ret = rng.standard_normal(half) * sigma
    jumps = rng.random(half) < JUMP_PROB
    ret[jumps] += rng.standard_normal(int(jumps.sum())) * JUMP_SIZE
    wick = np.abs(rng.standard_normal((2, half))) * sigma * 0.5
    volume = np.exp(rng.standard_normal(half) * 0.8) * (sigma / REGIMES[0]) * 50.0
    if mirrored:
        ret, sigma = np.concatenate([ret, -ret])[:n], np.concatenate([sigma, sigma])[:n]
        wick = np.concatenate([wick, wick[::-1]], axis=1)[:, :n]
        volume = np.concatenate([volume, volume])[:n]
    close = start_price * np.exp(np.cumsum(ret))
    open_ = np.concatenate([[start_price], close[:-1]])
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    t0 = start or datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=timeframe_seconds(timeframe))
    times = [t0 + i * step for i in range(n)]
    return pl.DataFrame(
        {"open_time": times, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )

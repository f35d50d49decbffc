"""`VolatilityRatio.take_bars` (a run of bars sampled at once) leaves exactly what `on_price` tick by tick
leaves, stops at the first bar its caller refuses and puts that bar back."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from services.risk.volatility import BLOCK_BARS, VolatilityRatio, epoch_us

SYMS = ["BTC/USDT", "ETH/USDT"]


def _ratio() -> VolatilityRatio:
    return VolatilityRatio(sample_s=1.0, short_samples=5, long_samples=20, min_samples=4)


def _state(v: VolatilityRatio) -> dict:
    return {s: vars(st) for s, st in v._s.items()}


def _bars(rng: random.Random, m: int, symbols: list[str]) -> tuple[list[list[int]], list[list[float]]]:
    t, px = 1_767_787_200_000, {s: 100.0 + 10 * i for i, s in enumerate(SYMS)}
    rows_t, rows_p = [], []
    for _ in range(m):
        row_t, row_p = [], []
        for sym in symbols:
            t += rng.choice([0, 1, 250, 999, 1000, 1001, 20_000])  # bursts under `sample_s` are not sampled
            px[sym] *= 1 + rng.gauss(0, 0.002 if rng.random() < 0.9 else 0.05)
            row_t.append(t)
            row_p.append(round(px[sym], 4))
        rows_t.append(row_t)
        rows_p.append(row_p)
    return rows_t, rows_p


@pytest.mark.parametrize("seed", range(8))
def test_take_bars_is_on_price_tick_by_tick_and_puts_back_the_refused_bar(seed):
    rng = random.Random(seed)
    symbols = [rng.choice(SYMS) for _ in range(rng.choice([1, 4, 6]))]
    fast, slow = _ratio(), _ratio()
    taken_total = 0
    for _run in range(12):
        long = rng.random() < 0.3  # runs of several blocks, refused around a block's edge
        rows_t, rows_p = _bars(
            rng, rng.randint(2 * BLOCK_BARS + 1, 3 * BLOCK_BARS) if long else rng.randint(1, 30), symbols
        )
        edges = [BLOCK_BARS - 1, BLOCK_BARS, BLOCK_BARS + 1, 2 * BLOCK_BARS] if long else []
        stop = rng.choice([None, rng.randrange(len(rows_t)), *edges])  # the caller refuses bar `stop`
        seen: list[float | None] = []

        def allow(j: int, ratio: float | None, stop=stop, seen=seen) -> bool:
            seen.append(ratio)
            return j != stop

        taken = fast.take_bars(symbols, np.array(rows_t, dtype=np.int64), np.array(rows_p), allow)
        assert taken == (len(rows_t) if stop is None else stop)
        for j in range(len(rows_t)):
            for sym, t, p in zip(symbols, rows_t[j], rows_p[j], strict=True):
                slow.on_price(sym, p, datetime.fromtimestamp(t / 1000, UTC))
            assert seen[j] == slow.market_ratio()  # the caller is asked with the ratio after bar j
            if j + 1 == taken:
                assert _state(fast) == _state(slow)
            if j == stop:
                break
        if stop is not None:  # the refused bar is put back; tick by tick it is the caller's
            for sym, t, p in zip(symbols, rows_t[stop], rows_p[stop], strict=True):
                fast.on_price(sym, p, datetime.fromtimestamp(t / 1000, UTC))
        assert _state(fast) == _state(slow)
        taken_total += taken
    assert taken_total > 0 and fast.market_ratio() is not None  # positive control: ratios were formed


def test_a_run_refused_at_its_first_bar_leaves_no_new_symbol():
    v = _ratio()
    t, p = np.array([[1_000]], dtype=np.int64), np.array([[1.0]])
    assert v.take_bars(["BTC/USDT"], t, p, lambda j, r: False) == 0
    assert v._s == {}
    assert v.take_bars(["BTC/USDT"], t, p, lambda j, r: True) == 1
    assert list(v._s) == ["BTC/USDT"]


def test_epoch_us_is_exact():
    now = datetime(2026, 12, 6, 21, 30, 5, 123_456, tzinfo=UTC)
    assert epoch_us(now) == 1_796_592_605_123_456

"""The backtest's fast paths change no result: ticks before a close folded into what they leave (while nothing
rests on the paper book), risk's quiet evaluation and the runs of quiet bars taken at once, against every
tick through every core and every breaker at every close: on the real BTCUSDT 1h bars with market and with
resting limit orders, and on synthetic 1-minute bars of two symbols with gaps, traded by random scripts."""

from __future__ import annotations

import numpy as np
import pytest

from backtest.engine import Backtest, Series, price_places
from backtest.run import apply_overrides
from services.signal.decision import BUY, HOLD, SELL
from tests.unit.backtest.test_engine import _orders, _record, _series


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        # limits at the last price: they rest on the paper book and fill as makers on later ticks
        ["execution.order_type=limit", "risk.limit_slippage_bps=0", "execution.limit_order_ttl_s=7200"],
    ],
)
def test_folded_ticks_and_the_quiet_path_record_exactly_the_full_run(btc_model, btc_1h, markets, overrides):
    settings, model = btc_model
    settings = apply_overrides(settings, overrides)
    fast_bt = Backtest(settings, _series(btc_1h), model, markets)
    slow_bt = Backtest(settings, _series(btc_1h), model, markets)
    slow_bt.fold_ticks = False
    slow_bt.risk.quiet_path = False
    slow_bt.quiet_runs = False
    quiet = {"n": 0}
    still = fast_bt.risk._quiet_still

    def counted(now):
        ok = still(now)
        quiet["n"] += ok
        return ok

    fast_bt.risk._quiet_still = counted  # type: ignore[method-assign]
    fast, slow = fast_bt.run(), slow_bt.run()
    assert _orders(fast) and fast.fills and fast.breaker_events  # something to compare
    assert _record(fast) == _record(slow)
    # positive controls: both fast paths were taken, and not always
    assert 0 < fast_bt.folded < fast.bars and slow_bt.folded == 0
    assert quiet["n"] > 0
    assert 0 < fast_bt.quiet < fast.bars and slow_bt.quiet == 0
    assert _cores(fast_bt) == _cores(slow_bt)
    if overrides:
        assert any(f["is_maker"] for f in fast.fills)  # limits rested on the book (ticks not folded then)


def _cores(bt: Backtest) -> tuple:
    """What the cores hold at the end of a run (the last bar goes tick by tick: nothing is left to a run)."""
    r, sig = bt.risk, bt.signal
    drift = sig.drift
    return (
        sorted(r.board.active),
        r.sm.state,
        dict(r.book.last_price),
        dict(r.last_tick_at),
        dict(r.heartbeats),
        {s: vars(st) for s, st in r.vol._s.items()},
        {
            s: (st.buf.tolist(), st.n, st.last_open, st.quote, st.last_trade_at)
            for s, st in sig.states.items()
        },
        None
        if drift is None
        else (drift._window_flat.tolist(), drift.rows_seen, drift._since_check, drift.detected, drift.last),
        bt.clock.now(),
        bt._n,
    )


def _synthetic(symbol: str, n: int, seed: int, gap_at: int | None) -> Series:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n) * np.where(rng.random(n) < 0.01, 20, 1)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.random(n) * 0.001)
    low = np.minimum(open_, close) * (1 - rng.random(n) * 0.001)
    ohlcv = np.column_stack([open_, high, low, close, rng.random(n) * 10 + 1]).round(2)
    t = 1_767_225_600_000 + 60_000 * np.arange(n, dtype=np.int64)  # 2026-01-01 00:00 UTC, 1-minute bars
    if gap_at is not None:
        ohlcv, t = (
            np.delete(ohlcv, range(gap_at, gap_at + 90), axis=0),
            np.delete(t, range(gap_at, gap_at + 90)),
        )
    ohlcv[:, 1] = ohlcv[:, [0, 1, 3]].max(axis=1)
    ohlcv[:, 2] = ohlcv[:, [0, 2, 3]].min(axis=1)
    return Series(symbol, "1m", 60_000, t, ohlcv, price_places(ohlcv[:, :4]))


@pytest.mark.parametrize("seed", range(3))
def test_quiet_runs_record_exactly_the_full_run_on_scripted_trades_gaps_and_midnights(
    btc_model, markets, seed
):
    """Two symbols, one with a 90-minute gap, three days of 1-minute bars (midnights), random scripted
    BUY/SELL sides in bursts (fills, positions, refusals) with long quiet spells between; limit orders at
    times (they rest on the book)."""
    settings, _model = btc_model  # the settings; no model (the scripts decide; candles of 1 minute)
    overrides = ["execution.order_type=limit", "risk.limit_slippage_bps=0"] if seed == 2 else []
    # without a model the signal core takes candles of its synthetic timeframe
    settings = apply_overrides(settings, ["signal.train.synthetic_timeframe=1m", *overrides])
    settings = settings.model_copy(update={"symbols": ["BTC/USDT", "ETH/USDT"]})
    n = 3 * 1440
    series = [_synthetic("BTC/USDT", n, seed, None), _synthetic("ETH/USDT", n, seed + 10, 1500 + 200 * seed)]
    rng = np.random.default_rng(seed)
    scripted = {}
    for s in series:
        sides = np.zeros(s.open_ms.size, dtype=np.int8)
        for start in rng.integers(0, s.open_ms.size - 30, 12):
            sides[start : start + 30] = rng.choice([HOLD, BUY, SELL], 30, p=[0.6, 0.2, 0.2])
        scripted[s.symbol] = sides
    fast_bt = Backtest(settings, series, None, markets, scripted=scripted)
    slow_bt = Backtest(settings, series, None, markets, scripted=scripted)
    slow_bt.fold_ticks = False
    slow_bt.risk.quiet_path = False
    slow_bt.quiet_runs = False
    fast, slow = fast_bt.run(), slow_bt.run()
    assert fast.fills and _orders(fast)  # something to compare
    assert _record(fast) == _record(slow)
    assert _cores(fast_bt) == _cores(slow_bt)
    assert 0 < fast_bt.quiet < len(fast.times) and slow_bt.quiet == 0

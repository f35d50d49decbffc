"""backtest benchmark: bars per second through the full stack (the services' signal, risk and paper cores).

- `backtest_bars_per_s`: one symbol (BTC/USDT filters), 1-minute bars, the default (bootstrap) model
  trained on synthetic 1-minute candles; replay's 4 ticks per bar, every breaker, sizing, fills. The main
  run only (the null baseline's shifted runs are timed apart: `backtest_null_run_bars_per_s`).
- `backtest_bars_per_s_10sym`: the same over 10 symbols closing together (bars summed over symbols).
- The bootstrap model holds on every bar of those series (`backtest_fills_per_1k_bars` is 0), so they time a
  stack that never trades: mostly runs of quiet bars taken at once (`Backtest._quiet_steps`), and the bars
  tick by tick while a breaker (drift, a cooldown, volatility) is in force. `backtest_bars_per_s_trading` times one that does: the real BTCUSDT 1h bars
  (`data/ohlcv/`, 9,504 bars), a model trained on them (the backtest tests' recipe: logistic, 2 folds),
  the default settings: decisions go through risk's approval path, orders to the paper broker, fills back
  (`backtest_trading_fills_per_1k_bars`, `backtest_trading_decisions_per_1k_bars`: BUY/SELL signals risk
  decided on).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from backtest.engine import Backtest, Record, Series, price_places
from libs.common import ohlcv
from libs.common.markets import DEFAULT_MARKETS_PATH, Markets
from libs.common.ohlcv import timeframe_ms
from libs.common.settings import BotSettings
from services.signal.registry import load_current, load_model
from services.signal.synthetic import synthetic_candles
from services.signal.train import run_training


def _model(root: Path):
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(root)})
    settings = base.model_copy(update={"signal": sig})
    # the bootstrap model's recipe (train.ensure_model), on 1-minute synthetic candles
    quick = sig.train.model_copy(
        update={"data": "synthetic", "synthetic_bars": 12_000, "folds": 3, "synthetic_timeframe": "1m"}
    )
    # promoted as the bootstrap (the gate refuses it by design: without `bootstrap` nothing is `current`,
    # and the bench would time a signal service with no model, which decides nothing)
    run_training(
        settings,
        train=quick,
        promote=True,
        bootstrap=True,
        progress=lambda m: None,
        version_prefix="bootstrap",
        drift_replay=False,
    )
    model = load_current(root)
    if model is None:
        raise RuntimeError(
            "the bootstrap model was not promoted: the bench would time a stack without a model"
        )
    return settings, model


BTC_1H = Path(__file__).resolve().parents[1] / "data" / "ohlcv" / "BTCUSDT-1h.csv"


def _trading(root: Path):
    """(settings, model, series): a model trained on the real BTCUSDT 1h bars, and those bars."""
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(root)})
    sig = sig.model_copy(update={"train": sig.train.model_copy(update={"data": str(BTC_1H), "folds": 2})})
    settings = base.model_copy(update={"signal": sig, "symbols": ["BTC/USDT"]})
    # the gate's verdict does not matter: the backtest takes the artefact
    path = run_training(settings, progress=lambda m: None, drift_replay=False)
    series = [Series.from_ohlcv(ohlcv.load(BTC_1H, symbol="BTC/USDT"), "BTC/USDT")]
    return settings, load_model(root, path.name), series


def _series(symbol: str, n: int, seed: int, price: float) -> Series:
    df = synthetic_candles(n, seed=seed, timeframe="1m", start_price=price)
    df = df.with_columns(
        *[pl.col(c).round(2) for c in ("open", "high", "low", "close")], pl.col("volume").round(4)
    )
    df = df.with_columns(
        pl.max_horizontal("open", "high", "close").alias("high"),
        pl.min_horizontal("open", "low", "close").alias("low"),
    )
    arr = df.select("open", "high", "low", "close", "volume").to_numpy().astype(np.float64)
    t = (df["open_time"].dt.epoch("ms")).to_numpy().astype(np.int64)
    return Series(symbol, "1m", timeframe_ms("1m"), t, arr, price_places(arr[:, :4]))


def _markets(n: int) -> tuple[Markets, list[str]]:
    m = Markets.load(DEFAULT_MARKETS_PATH)
    btc = m.filters["BTC/USDT"]
    syms = ["BTC/USDT"] + [f"BT{i}/USDT" for i in range(1, n)]
    for s in syms[1:]:
        m.filters[s] = replace(btc, symbol=s, id=s.replace("/", ""), base=s.split("/")[0])
    return m, syms


def _rate(settings, series, model, markets) -> tuple[float, Record]:
    t0 = time.perf_counter()
    rec = Backtest(
        settings.model_copy(update={"symbols": [s.symbol for s in series]}), series, model, markets
    ).run()
    return rec.bars / (time.perf_counter() - t0), rec


def run(quick: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bnml-bench-backtest-") as d:
        settings, model = _model(Path(d))
    n = 10_000 if quick else 50_000  # a month of 1-minute bars (a year takes ~10x longer)
    markets, syms = _markets(10)
    one = [_series("BTC/USDT", n, 11, 30_000.0)]
    rate1, rec = _rate(settings, one, model, markets)
    n10 = n // 10
    ten = [_series(s, n10, 20 + i, 30_000.0 + 100 * i) for i, s in enumerate(syms)]
    rate10, _ = _rate(settings, ten, model, markets)
    t0 = time.perf_counter()
    scripted = {"BTC/USDT": np.roll(rec.sides["BTC/USDT"], n // 3)}
    null = Backtest(settings, one, model, markets, scripted=scripted).run()
    null_rate = null.bars / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="bnml-bench-backtest-") as d:
        tsettings, tmodel, tseries = _trading(Path(d))
    rate_t, rec_t = _rate(tsettings, tseries, tmodel, Markets.load(DEFAULT_MARKETS_PATH))
    decided = rec_t.signals["BUY"] + rec_t.signals["SELL"]
    return {
        "backtest_bars_per_s": rate1,
        "backtest_bars_per_s_10sym": rate10,
        "backtest_null_run_bars_per_s": null_rate,
        "backtest_fills_per_1k_bars": len(rec.fills) / n * 1000,
        "backtest_bars_per_s_trading": rate_t,
        "backtest_trading_fills_per_1k_bars": len(rec_t.fills) / rec_t.bars * 1000,
        "backtest_trading_decisions_per_1k_bars": decided / rec_t.bars * 1000,
    }


if __name__ == "__main__":
    print(run(quick=True))

"""Walk-forward folds through the full stack: each fold's model, traded by the backtest (signal, risk and
paper-execution cores) over its out-of-sample window, so the training report describes what would trade."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from backtest.engine import Backtest, Series, price_places
from backtest.report import strategy_figures
from libs.common.markets import DEFAULT_MARKETS_PATH, ROOT, Markets
from services.signal.features import FeatureSpec
from services.signal.registry import LoadedModel
from services.signal.training import predict_proba, prediction_score, reference_distributions

FoldBacktest = Callable[[int, object, np.ndarray, np.ndarray, np.ndarray], dict]


def _markets(settings) -> Markets:
    p = Path(settings.risk.markets_path or DEFAULT_MARKETS_PATH)
    return Markets.load(p if p.is_absolute() else ROOT / p)


def traded_symbol(settings, path: Path | None) -> str:
    """The symbol a training file's bars are traded as (its filters size the orders): from the file name,
    else the first configured symbol (synthetic candles)."""
    markets = _markets(settings)
    if path is not None:
        from backtest.run import BacktestError, symbol_for_file

        try:
            sym = symbol_for_file(path, markets)
            if sym in markets:
                return sym
        except BacktestError:
            pass
    return settings.symbols[0]


def fold_model(
    k: int,
    pipeline,
    means: np.ndarray,
    x_train: np.ndarray,
    spec: FeatureSpec,
    timeframe: str,
    horizon: int,
    fee_rate: float,
    trained_at: datetime,
) -> LoadedModel:
    """A fold's model as the signal core loads one (with its own drift reference)."""
    ref = reference_distributions(x_train, prediction_score(predict_proba(pipeline, x_train)), spec.names)
    return LoadedModel(
        version=f"walk-forward-fold-{k}",
        path=Path("."),
        pipeline=pipeline,
        metadata={"reference": ref},
        spec=spec,
        timeframe=timeframe,
        trained_at=trained_at,
        class_mean_returns=np.asarray(means, dtype=np.float64),
        horizon=horizon,
        fee_rate=fee_rate,
    )


def fold_backtester(
    settings,
    candles: pl.DataFrame,
    symbol: str,
    spec: FeatureSpec,
    timeframe: str,
    horizon: int,
    fee_rate: float,
) -> FoldBacktest:
    """`(k, pipeline, class means, train rows x, test row indices) -> {equity, summary, record}` for walk_forward.

    The test window is traded with the `warmup_bars - 1` bars before it fed first (the live buffer is full
    at the first test bar, as it would be for a model taking over a running service); equity is reported
    over the test bars only, starting at 1."""
    markets = _markets(settings)
    settings = settings.model_copy(update={"symbols": [symbol]})
    arr = candles.select("open", "high", "low", "close", "volume").to_numpy().astype(np.float64)
    t_ms = candles["open_time"].dt.epoch("ms").to_numpy().astype(np.int64)
    tf_ms = int(t_ms[1] - t_ms[0]) if t_ms.size > 1 else 0
    places = price_places(arr[:, :4])
    trained_at = datetime.now(UTC)

    def run(k: int, pipeline, means: np.ndarray, x_train: np.ndarray, te: np.ndarray) -> dict:
        lo = max(0, int(te[0]) - (spec.warmup_bars - 1))
        hi = int(te[-1]) + 1
        series = [Series(symbol, timeframe, tf_ms, t_ms[lo:hi], arr[lo:hi], places)]
        model = fold_model(k, pipeline, means, x_train, spec, timeframe, horizon, fee_rate, trained_at)
        rec = Backtest(settings, series, model, markets).run()
        eq = np.asarray(rec.equity)
        test_eq = eq[int(te[0]) - lo :]
        base = eq[int(te[0]) - lo - 1] if int(te[0]) > lo else rec.start_equity
        summary = strategy_figures(rec, tf_ms)
        sells = [f for f in rec.fills if f["side"] == "SELL"]
        summary.update(
            {
                "total_return_pct": round((float(test_eq[-1]) / base - 1) * 100, 4),
                "n_trades": len(sells),
                "hit_rate": round(sum(f["realized_pnl_usdt"] > 0 for f in sells) / len(sells), 4)
                if sells
                else None,
                "refusals_by_reason": dict(rec.refusals.most_common()),
                "breaker_trips": dict(_trips(rec)),
            }
        )
        return {"equity": test_eq / base, "summary": summary, "record": rec}

    return run


def _trips(rec) -> dict:
    out: dict[str, int] = {}
    for e in rec.breaker_events:
        if e["event"] == "tripped":
            out[e["breaker"]] = out.get(e["breaker"], 0) + 1
    return out

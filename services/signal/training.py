"""Training core (pure: arrays in, results out): labels net of fees, walk-forward splits, the model,
out-of-sample trading simulation against buy-and-hold and not trading, reference distributions, and a
drift replay. The command that reads files and writes artefacts is `services/signal/train.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from libs.common.settings.signal import DriftSettings
from services.signal.decision import BUY, CLASSES, SELL, decide, round_trip_cost
from services.signal.drift import DriftMonitor, reference_bins
from services.signal.features import FeatureSpec, complete_rows, compute_features, feature_matrix
from services.signal.model_card import class_prior, quality_vs_prior, reliability_table, scores_vs_prior

Progress = Callable[[str], None]


class Classifier(Protocol):
    """A fitted classifier as the signal code uses one (`fit_model`'s pipeline, or the calibrated ensemble
    over it): sklearn ships no types, so this names the members everything here relies on."""

    classes_: np.ndarray

    def fit(self, x: np.ndarray, y: np.ndarray) -> object: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


# -- labels ------------------------------------------------------------------------------------
def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """log(close[t+h] / close[t]); NaN where the horizon runs past the data."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full(close.size, np.nan)
    if close.size > horizon:
        out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out


def make_labels(close: np.ndarray, horizon: int, fee_rate: float) -> np.ndarray:
    """1 = a long over the horizon beats the round-trip fees, -1 = exiting beats holding by more than the
    fees, 0 = the fees eat the move; NaN where the future is unknown."""
    fwd = forward_returns(close, horizon)
    cost = round_trip_cost(fee_rate)
    y = np.where(fwd > cost, 1.0, np.where(fwd < -cost, -1.0, 0.0))
    y[np.isnan(fwd)] = np.nan
    return y


# -- walk-forward ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    train_end: int  # rows [0, train_end) train
    test_start: int  # rows [test_start, test_end) test
    test_end: int


def walk_forward_splits(n: int, folds: int, initial_fraction: float, horizon: int) -> list[Split]:
    """Expanding-window, time-ordered splits. Training rows stop `horizon` bars before the test starts,
    so no training label looks into the test window."""
    start = int(n * initial_fraction)
    fold_len = (n - start) // folds
    if start <= horizon + 1 or fold_len < 2:
        raise ValueError(
            f"not enough rows ({n}) for {folds} folds after {initial_fraction:.0%} initial training"
        )
    splits = []
    for k in range(folds):
        ts = start + k * fold_len
        te = n if k == folds - 1 else ts + fold_len
        splits.append(Split(train_end=ts - horizon, test_start=ts, test_end=te))
    return splits


# -- model -------------------------------------------------------------------------------------
CALIBRATION_SPLITS = 3


def fit_model(
    x: np.ndarray,
    y: np.ndarray,
    kind: str = "logistic",
    c: float = 0.5,
    seed: int = 7,
    calibrate: bool = True,
) -> Classifier:
    """Scaler + classifier; calibrated (sigmoid, per class) on time-ordered folds of `x` itself.

    Calibration matters because the decision rule reads the probabilities as probabilities (threshold,
    expected edge). Each calibration fold fits on the rows before it and calibrates on the rows after it
    (`TimeSeriesSplit`), so no calibrator sees a row its classifier learned from or that lies in its past;
    the served model averages the `CALIBRATION_SPLITS` calibrated classifiers. Inside a walk-forward fold this
    sees only that fold's training rows.
    """
    if kind == "logistic":
        clf = LogisticRegression(C=c, max_iter=1000)
    elif kind == "hgb":
        clf = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0, random_state=seed
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    pipe: Classifier = Pipeline([("scale", StandardScaler()), ("clf", clf)])
    yy = y.astype(np.int64)
    if calibrate and x.shape[0] >= 50 * (CALIBRATION_SPLITS + 1):
        model: Classifier = CalibratedClassifierCV(
            pipe, method="sigmoid", cv=TimeSeriesSplit(CALIBRATION_SPLITS)
        )
        try:
            model.fit(x, yy)
            return model
        except ValueError:
            pass  # a class absent from an early calibration fold: fall back to the uncalibrated pipeline
    pipe.fit(x, yy)
    return pipe


def predict_proba(model: Classifier, x: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities ordered down, flat, up (a class absent from training gets 0)."""
    raw = model.predict_proba(x)
    out = np.zeros((raw.shape[0], 3))
    for j, cls in enumerate(model.classes_):
        out[:, CLASSES.index(int(cls))] = raw[:, j]
    return out


def class_mean_returns(fwd: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean forward log return of each class (down, flat, up) in the training rows."""
    means = []
    for cls in CLASSES:
        sel = y == cls
        means.append(float(np.mean(fwd[sel])) if sel.any() else 0.0)
    return np.asarray(means)


# -- trading simulation ------------------------------------------------------------------------
@dataclass
class SimResult:
    equity: np.ndarray  # mark-to-market equity per bar (starts at 1)
    trade_returns: list[float] = field(default_factory=list)  # net of fees, simple returns
    # True on the bars that end with a position open
    held: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def simulate_long_only(close: np.ndarray, side: np.ndarray, horizon: int, fee_rate: float) -> SimResult:
    """Spot, long only: BUY enters at the close when flat; exit after `horizon` bars, on a SELL, or at the
    end of the window. Fees on both sides. Equity marks the position to the close of every bar."""
    n = close.size
    eq = np.ones(n)
    held = np.zeros(n, dtype=bool)
    cash, entry, held_since, units, cash_at_entry = 1.0, 0.0, -1, 0.0, 1.0
    trades: list[float] = []
    for t in range(n):
        if held_since >= 0:
            exit_now = t - held_since >= horizon or side[t] == SELL or t == n - 1
            if exit_now:
                proceeds = units * close[t] * (1 - fee_rate)
                trades.append(proceeds / cash_at_entry - 1.0)
                cash, held_since, units = proceeds, -1, 0.0
        if held_since < 0 and side[t] == BUY and t < n - 1:
            cash_at_entry, entry = cash, close[t]
            units, held_since = cash * (1 - fee_rate) / entry, t
            cash = 0.0
        eq[t] = cash + units * close[t]
        held[t] = held_since >= 0
    return SimResult(eq, trades, held)


def buy_and_hold(close: np.ndarray, fee_rate: float) -> np.ndarray:
    """Buy at the first close, sell at the last, fees both sides; mark-to-market in between."""
    eq: np.ndarray = (1 - fee_rate) * close / close[0]
    eq[-1] *= 1 - fee_rate
    return eq


def max_drawdown(equity: np.ndarray) -> float:
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak)) if equity.size else 0.0


def summarize(equity: np.ndarray, trades: list[float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "total_return_pct": round((float(equity[-1]) - 1.0) * 100, 4),
        "max_drawdown_pct": round(max_drawdown(equity) * 100, 4),
    }
    if trades is not None:
        out["n_trades"] = len(trades)
        out["hit_rate"] = round(sum(r > 0 for r in trades) / len(trades), 4) if trades else None
        out["avg_trade_net_bps"] = round(float(np.mean(trades)) * 1e4, 2) if trades else None
    return out


# -- the dataset -------------------------------------------------------------------------------
@dataclass
class Dataset:
    frame: pl.DataFrame  # candles + features
    x: np.ndarray
    y: np.ndarray
    fwd: np.ndarray
    close: np.ndarray
    times: list[datetime]  # the open times

    @property
    def usable(self) -> np.ndarray:
        """Rows with every feature defined and a known label."""
        usable: np.ndarray = complete_rows(self.x) & ~np.isnan(self.y)
        return usable


def build_dataset(candles: pl.DataFrame, spec: FeatureSpec, horizon: int, fee_rate: float) -> Dataset:
    frame = compute_features(candles, spec)
    close = frame["close"].to_numpy()
    return Dataset(
        frame,
        feature_matrix(frame, spec),
        make_labels(close, horizon, fee_rate),
        forward_returns(close, horizon),
        close,
        frame["open_time"].to_list(),
    )


# -- walk-forward evaluation -------------------------------------------------------------------
@dataclass
class Evaluation:
    report: dict[str, Any]
    oos_index: np.ndarray
    equity_model: np.ndarray
    equity_bh: np.ndarray
    folds: list[dict[str, Any]]
    fold_close: list[np.ndarray] = field(default_factory=list)  # out-of-sample closes, per fold
    fold_side: list[np.ndarray] = field(default_factory=list)  # the model's decisions on them, per fold
    fold_models: list[Classifier] = field(default_factory=list)  # each fold's fitted model
    fold_test: list[np.ndarray] = field(
        default_factory=list
    )  # each fold's test row indices (into the dataset)
    fold_proba: list[np.ndarray] = field(default_factory=list)  # its (n, 3) out-of-sample probabilities
    fold_prior: list[np.ndarray] = field(default_factory=list)  # its training rows' class frequencies


FoldBacktest = Callable[[int, Classifier, np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]
SIMPLIFIED = (
    "simplified simulation (not the traded policy): spot long-only, all-in; BUY enters at the close "
    "when flat; exit after the label horizon, on SELL or at the fold end; fees both sides; no risk "
    "rules, no slippage"
)
FULL_STACK = (
    "full stack (the traded policy): each fold's model through the backtest, i.e. the signal core, "
    "every risk rule (sizing, breakers, budgets, throttles) and the paper broker (fees, slippage, "
    "fills), in simulated time"
)


def walk_forward(
    ds: Dataset,
    *,
    horizon: int,
    fee_rate: float,
    threshold: float,
    min_edge_bps: float | None,
    folds: int,
    initial_fraction: float,
    kind: str,
    c: float,
    seed: int,
    progress: Progress = lambda s: None,
    full_stack: FoldBacktest | None = None,
) -> Evaluation:
    """Expanding-window walk-forward. With `full_stack` (the backtest, one call per fold: fold number, model,
    class means, training features, test rows), the `model` figures are the traded policy's; the quick
    simplified simulation is kept beside them as `simplified_simulation`, labelled as such."""
    ok = ds.usable
    idx_ok = np.flatnonzero(complete_rows(ds.x))  # rows a live model could decide on
    first, n = int(idx_ok[0]), ds.x.shape[0]
    splits = walk_forward_splits(n - first, folds, initial_fraction, horizon)
    eq_model, eq_bh, oos, fold_reports = [], [], [], []
    all_side, all_y = [], []
    all_trades: list[float] = []
    simple_eq: list[np.ndarray] = []
    stack_summaries: list[dict[str, Any]] = []
    fold_models, fold_test, fold_proba, fold_prior = [], [], [], []
    gross_level, held_bars = 1.0, 0
    m_level = bh_level = s_level = 1.0
    for k, sp in enumerate(splits, 1):
        tr = np.arange(first, first + sp.train_end)
        tr = tr[ok[tr]]
        te = np.arange(first + sp.test_start, first + sp.test_end)
        model = fit_model(ds.x[tr], ds.y[tr], kind, c, seed)
        means = class_mean_returns(ds.fwd[tr], ds.y[tr])
        proba = predict_proba(model, ds.x[te])
        dec = decide(proba, means, fee_rate, threshold, min_edge_bps)
        sim = simulate_long_only(ds.close[te], dec.side, horizon, fee_rate)
        gross = simulate_long_only(ds.close[te], dec.side, horizon, 0.0)  # the same decisions without fees
        bh = buy_and_hold(ds.close[te], fee_rate)
        prior = class_prior(ds.y[tr])
        lab = ~np.isnan(ds.y[te])
        quality = scores_vs_prior(proba[lab], ds.y[te][lab], prior)
        simple_eq.append(sim.equity * s_level)
        s_level *= sim.equity[-1]
        if full_stack is not None:
            fs = full_stack(k, model, means, ds.x[tr], te)
            fold_eq, fold_summary = np.asarray(fs["equity"]), fs["summary"]
            stack_summaries.append(fold_summary)
        else:
            fold_eq, fold_summary = sim.equity, summarize(sim.equity, sim.trade_returns)
            fold_summary.update(
                {
                    "gross_return_pct": round((float(gross.equity[-1]) - 1) * 100, 4),
                    "exposure_time_pct": round(float(np.mean(sim.held)) * 100, 4),
                    "turnover": round(2.0 * len(sim.trade_returns), 6),
                }
            )
        gross_level *= 1 + fold_summary.get("gross_return_pct", 0.0) / 100
        held_bars += fold_summary.get("exposure_time_pct", 0.0) / 100 * te.size
        fold_models.append(model)
        fold_test.append(te)
        fold_proba.append(proba)
        fold_prior.append(prior)
        eq_model.append(fold_eq * m_level)
        eq_bh.append(bh * bh_level)
        m_level, bh_level = m_level * fold_eq[-1], bh_level * bh[-1]
        oos.append(te)
        all_side.append(dec.side)
        all_y.append(ds.y[te])
        all_trades += sim.trade_returns
        fold = {
            "fold": k,
            "train": [str(ds.times[tr[0]]), str(ds.times[tr[-1]])],
            "test": [str(ds.times[te[0]]), str(ds.times[te[-1]])],
            "train_rows": int(tr.size),
            "test_rows": int(te.size),
            "model": fold_summary,
            "buy_and_hold": summarize(bh),
            "quality": quality,
        }
        if full_stack is not None:
            fold["simplified_simulation"] = summarize(sim.equity, sim.trade_returns)
        fold_reports.append(fold)
        progress(
            f"fold {k}/{len(splits)}: test {fold['test'][0]} .. {fold['test'][1]}, "
            f"model {fold['model']['total_return_pct']:+.2f}% ({fold['model']['n_trades']} trades), "
            f"buy&hold {fold['buy_and_hold']['total_return_pct']:+.2f}%"
        )
    equity_model, equity_bh = np.concatenate(eq_model), np.concatenate(eq_bh)
    side, y = np.concatenate(all_side), np.concatenate(all_y)
    labelled = ~np.isnan(y)
    buys = (side == BUY) & labelled
    sells = (side == SELL) & labelled
    simple_summary = summarize(np.concatenate(simple_eq), all_trades)
    oos_rows = sum(te.size for te in fold_test)
    if full_stack is not None:
        model_summary = summarize(equity_model)
        closed = sum(f["n_trades"] for f in stack_summaries)
        hits = sum((f["hit_rate"] or 0) * f["n_trades"] for f in stack_summaries)
        model_summary.update(
            {
                "n_trades": closed,
                "hit_rate": round(hits / closed, 4) if closed else None,
                "avg_trade_net_bps": None,
                "fills": sum(f["fills"] for f in stack_summaries),
                "fees_usdt": round(sum(f["fees_usdt"] for f in stack_summaries), 6),
                "turnover": round(sum(f["turnover"] for f in stack_summaries), 6),
                "exposure_avg_pct": round(
                    sum(
                        f["exposure_avg_pct"] * te.size
                        for f, te in zip(stack_summaries, fold_test, strict=True)
                    )
                    / oos_rows,
                    4,
                ),
            }
        )
    else:
        model_summary = simple_summary
    model_summary.update(
        {
            "gross_return_pct": round((gross_level - 1) * 100, 4),
            "exposure_time_pct": round(held_bars / oos_rows * 100, 4),
            "turnover": model_summary.get("turnover", round(2.0 * len(all_trades), 6)),
        }
    )
    model_summary.update(
        {
            "precision_buy": round(float(np.mean(y[buys] == 1)), 4) if buys.any() else None,
            "precision_sell": round(float(np.mean(y[sells] == -1)), 4) if sells.any() else None,
            "buy_signals": int((side == BUY).sum()),
            "sell_signals": int((side == SELL).sum()),
            "base_rate_up": round(float(np.mean(y[labelled] == 1)), 4),
        }
    )
    report: dict[str, Any] = {
        "model": model_summary,
        "buy_and_hold": summarize(equity_bh),
        "no_trade": {"total_return_pct": 0.0, "max_drawdown_pct": 0.0, "n_trades": 0},
        "out_of_sample": {
            "bars": int(equity_model.size),
            "folds": len(splits),
            "from": str(ds.times[oos[0][0]]),
            "to": str(ds.times[oos[-1][-1]]),
            "evaluation": FULL_STACK if full_stack is not None else SIMPLIFIED,
        },
        "folds": fold_reports,
    }
    if full_stack is not None:
        report["simplified_simulation"] = {**simple_summary, "what": SIMPLIFIED}
    lab = ~np.isnan(y)
    proba_all = np.concatenate(fold_proba)
    prior_all = np.concatenate(
        [np.tile(p, (te.size, 1)) for p, te in zip(fold_prior, fold_test, strict=True)]
    )
    quality = quality_vs_prior(proba_all[lab], prior_all[lab], y[lab])
    report["quality"] = {
        **quality,
        "prior": "each fold's training-label class frequencies",
        "reliability_up": reliability_table(proba_all[lab, 2], (y[lab] == 1).astype(float)),
    }
    return Evaluation(
        report,
        np.concatenate(oos),
        equity_model,
        equity_bh,
        fold_reports,
        [ds.close[te] for te in oos],
        all_side,
        fold_models,
        fold_test,
        fold_proba,
        fold_prior,
    )


# -- the null baseline (simplified simulation) -----------------------------------------------------
@dataclass(frozen=True)
class NullResult:
    """Where the model's out-of-sample net return falls among its own signals shifted in time."""

    actual_return_pct: float
    p_value: float
    shifts: int
    null_quantiles_pct: dict[str, float]  # 5/25/50/75/95 % of the null returns
    basis: str = (
        "simplified walk-forward simulation (long-only, close to close, fees both sides); "
        "not the full-stack backtest"
    )


def chained_return(
    close_segments: list[np.ndarray], side_segments: list[np.ndarray], horizon: int, fee_rate: float
) -> float:
    """Net simple return of trading each segment in turn (equity carried from one to the next)."""
    level = 1.0
    for close, side in zip(close_segments, side_segments, strict=True):
        level *= float(simulate_long_only(close, side, horizon, fee_rate).equity[-1])
    return level - 1.0


def circular_shift_null(
    close_segments: list[np.ndarray],
    side_segments: list[np.ndarray],
    *,
    horizon: int,
    fee_rate: float,
    shifts: int = 200,
    seed: int = 7,
) -> NullResult:
    """p-value of the model's timing: its out-of-sample decisions, each fold's rotated by a random offset
    (at least `horizon` bars, so no shifted signal lands on its own trade), traded the same way.

    A shift keeps how often and in what runs the model trades, and the market path, but breaks the link
    between a signal and the bar it was made on. p = (1 + #{null >= actual}) / (1 + shifts): the chance that
    timing-free signals do at least as well. Pure and seeded.
    """
    actual = chained_return(close_segments, side_segments, horizon, fee_rate)
    rng = np.random.default_rng(seed)
    null = np.empty(shifts)
    for i in range(shifts):
        rolled = []
        for side in side_segments:
            n = side.size
            lo, hi = min(horizon, n // 2), max(n - horizon, n // 2 + 1)
            k = int(rng.integers(lo, hi)) if n > 1 else 0
            rolled.append(np.roll(side, k))
        null[i] = chained_return(close_segments, rolled, horizon, fee_rate)
    # a tolerance so that a shift reproducing the very same return counts as "at least as good"
    p = (1 + int(np.sum(null >= actual - 1e-12))) / (1 + shifts)
    q = {f"p{int(k)}": round(float(np.percentile(null, k)) * 100, 4) for k in (5, 25, 50, 75, 95)}
    return NullResult(round(actual * 100, 4), round(p, 6), shifts, q)


def reference_distributions(x: np.ndarray, scores: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "features": {n: reference_bins(x[:, j]) for j, n in enumerate(names)},
        "prediction": reference_bins(scores),
    }


def prediction_score(proba: np.ndarray) -> np.ndarray:
    """The directional score whose distribution drift watches: p(up) - p(down)."""
    score: np.ndarray = proba[:, 2] - proba[:, 0]
    return score


# -- drift replay ------------------------------------------------------------------------------
def drift_replay(
    ds: Dataset,
    spec: FeatureSpec,
    *,
    train_fraction: float,
    kind: str,
    c: float,
    seed: int,
    thresholds: DriftSettings,
    horizon: int,
) -> dict[str, Any]:
    """Train on the first `train_fraction` of the rows, then replay the rest through the drift monitor
    as the live service would. Returns the detection periods (time ranges where drift was flagged)."""
    ok = ds.usable
    cut = int(ds.x.shape[0] * train_fraction)
    tr = np.arange(0, max(cut - horizon, 1))
    tr = tr[ok[tr]]
    model = fit_model(ds.x[tr], ds.y[tr], kind, c, seed)
    ref = reference_distributions(ds.x[tr], prediction_score(predict_proba(model, ds.x[tr])), spec.names)
    mon = DriftMonitor(spec.names, ref["features"], ref["prediction"], thresholds)
    live = np.arange(cut, ds.x.shape[0])
    live = live[complete_rows(ds.x[live])]
    scores = prediction_score(predict_proba(model, ds.x[live]))
    periods: list[dict[str, Any]] = []
    checks = []
    for i, row in enumerate(live):
        res = mon.observe(ds.x[row], scores[i : i + 1])
        if res is None:
            continue
        ts = str(ds.times[row])
        checks.append(
            {
                "ts": ts,
                "detected": res.detected,
                "max_feature_psi": max(
                    v for k, v in res.scores.items() if k not in ("prediction", "hit_rate")
                ),
                "prediction_psi": res.scores["prediction"],
            }
        )
        if res.changed and res.detected:
            periods.append({"from": ts, "to": None, "reason": res.reason})
        elif res.changed and periods:
            periods[-1]["to"] = ts
    return {
        "train": [str(ds.times[int(tr[0])]), str(ds.times[int(tr[-1])])],
        "replay": [str(ds.times[int(live[0])]), str(ds.times[int(live[-1])])],
        "periods": periods,
        "checks": checks,
    }


def label_definition(horizon: int, fee_rate: float) -> dict[str, Any]:
    return {
        "kind": "forward_log_return_3class",
        "horizon_bars": horizon,
        "fee_rate_per_side": fee_rate,
        "round_trip_cost_bps": round(round_trip_cost(fee_rate) * 1e4, 4),
        "classes": {
            "1": "long beats round-trip fees",
            "0": "fees eat the move",
            "-1": "exit beats holding by more than round-trip fees",
        },
        "cost_formula": "-2*ln(1-fee_rate)",
    }

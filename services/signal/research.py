"""A counted search for an edge (pure core: arrays in, results out). The shell is `scripts/edge_search.py`.

Each configuration (data set, label, model, horizon, probability threshold) is evaluated walk-forward, out of
sample, net of fees, with the simplified simulation of `training.py` (spot long-only, all-in, exit after the
horizon, on SELL or at the fold end; the gate's p-value is computed on the same simulation). Every
configuration tried is counted, and the p-values are corrected for the search:

- per configuration: the circular-shift null of `training.circular_shift_null` (its own out-of-sample signals,
  each fold rotated), p = (1 + #{null >= actual}) / (1 + shifts);
- for the search: Westfall-Young single-step min-p. The same fold rotations are applied to every configuration
  of a data set (configurations on one data set share their test windows), so the null keeps the dependence
  between configurations. For each rotation, the smallest per-configuration p-value it would have got is one
  draw of "the best p of N configurations when none has an edge"; a configuration's adjusted p is the
  share of those draws at or below its own p. The best configuration's adjusted p is the p-value of the
  search. Holm's (Bonferroni step-down) adjusted p is reported beside it, for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.signal.decision import BUY, SELL, decide, round_trip_cost
from services.signal.training import (
    class_mean_returns,
    fit_model,
    forward_returns,
    make_labels,
    predict_proba,
    walk_forward_splits,
)

LABELS = ("horizon_return", "cost_aware", "triple_barrier")


# -- labels ----------------------------------------------------------------------------------------
def horizon_return_labels(close: np.ndarray, horizon: int) -> np.ndarray:
    """Up (1) / down (-1) by the sign of the horizon's forward return, fees ignored; NaN at the end."""
    fwd = forward_returns(close, horizon)
    y = np.where(fwd > 0, 1.0, -1.0)
    y[np.isnan(fwd)] = np.nan
    return y


def triple_barrier_labels(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    horizon: int,
    fee_rate: float,
    k: float = 1.0,
    vol_window: int = 24,
) -> np.ndarray:
    """Triple barrier: from each close, an upper barrier at +max(k * sigma * sqrt(h), round-trip cost) and a lower
    one at -k * sigma * sqrt(h) (sigma: std of the last `vol_window` 1-bar log returns, known at the bar), and a
    vertical one after `horizon` bars. 1 = the upper is touched first (a bar's high), -1 = the lower first (a
    bar's low; a bar touching both counts as lower, the conservative reading), 0 = neither within the horizon.
    NaN where sigma or the full horizon is unknown."""
    close = np.asarray(close, dtype=np.float64)
    n = close.size
    r = np.diff(np.log(close), prepend=np.nan)
    sigma = np.full(n, np.nan)
    for t in range(vol_window, n):
        sigma[t] = np.std(r[t - vol_window + 1 : t + 1], ddof=1)
    width = k * sigma * np.sqrt(horizon)
    up = close * np.exp(np.maximum(width, round_trip_cost(fee_rate)))
    dn = close * np.exp(-width)
    y = np.zeros(n)
    decided = np.zeros(n, dtype=bool)
    for j in range(1, horizon + 1):
        hi = np.full(n, np.nan)
        lo = np.full(n, np.nan)
        hi[:-j] = high[j:]
        lo[:-j] = low[j:]
        hit_dn = ~decided & (lo <= dn)
        hit_up = ~decided & ~hit_dn & (hi >= up)
        y[hit_dn] = -1.0
        y[hit_up] = 1.0
        decided |= hit_dn | hit_up
    y[np.isnan(sigma)] = np.nan
    y[n - horizon :] = np.nan
    return y


def labels_for(
    kind: str, high: np.ndarray, low: np.ndarray, close: np.ndarray, horizon: int, fee_rate: float
) -> np.ndarray:
    if kind == "horizon_return":
        return horizon_return_labels(close, horizon)
    if kind == "cost_aware":
        return make_labels(close, horizon, fee_rate)
    if kind == "triple_barrier":
        return triple_barrier_labels(high, low, close, horizon, fee_rate)
    raise ValueError(f"unknown label kind {kind!r} (one of {', '.join(LABELS)})")


# -- the fast simplified simulation ----------------------------------------------------------------
def _next_index(mask: np.ndarray) -> np.ndarray:
    """For each i, the first j >= i with mask[j] (len(mask) when none)."""
    n = mask.size
    arr = np.where(mask, np.arange(n), n)
    return np.minimum.accumulate(arr[::-1])[::-1]


def final_level(close: np.ndarray, side: np.ndarray, horizon: int, fee_rate: float) -> tuple[float, int]:
    """(end equity, trades) of `training.simulate_long_only` on the same inputs, jumping from trade to trade
    (tests hold the two equal)."""
    n = close.size
    if n < 2:
        return 1.0, 0
    buy = side == BUY
    buy[n - 1] = False
    next_buy = _next_index(buy)
    next_sell = np.append(_next_index(side == SELL), n)
    keep = (1.0 - fee_rate) ** 2
    level, trades = 1.0, 0
    t = int(next_buy[0])
    while t < n:
        x = min(t + horizon, int(next_sell[t + 1]), n - 1)
        level *= keep * float(close[x]) / float(close[t])
        trades += 1
        t = int(next_buy[x])
    return level, trades


def chained(
    close_segments: Sequence[np.ndarray], side_segments: Sequence[np.ndarray], horizon: int, fee_rate: float
) -> tuple[float, int]:
    level, trades = 1.0, 0
    for c, s in zip(close_segments, side_segments, strict=True):
        lv, tr = final_level(c, s, horizon, fee_rate)
        level, trades = level * lv, trades + tr
    return level - 1.0, trades


def rotation_offsets(fold_sizes: Sequence[int], shifts: int, margin: int, seed: int) -> np.ndarray:
    """(shifts, folds) rotation of each fold's signals, at least `margin` bars from 0 either way; the same for
    every configuration that shares the folds (so the null keeps their dependence)."""
    rng = np.random.default_rng(seed)
    out = np.empty((shifts, len(fold_sizes)), dtype=np.int64)
    for j, n in enumerate(fold_sizes):
        lo, hi = min(margin, n // 2), max(n - margin, n // 2 + 1)
        out[:, j] = rng.integers(lo, hi, size=shifts) if n > 1 else 0
    return out


def null_returns(
    close_segments: Sequence[np.ndarray],
    side_segments: Sequence[np.ndarray],
    offsets: np.ndarray,
    horizon: int,
    fee_rate: float,
) -> np.ndarray:
    out = np.empty(offsets.shape[0])
    for i, row in enumerate(offsets):
        out[i] = chained(
            close_segments,
            [np.roll(s, int(k)) for s, k in zip(side_segments, row, strict=True)],
            horizon,
            fee_rate,
        )[0]
    return out


def p_value(actual: float, null: np.ndarray) -> float:
    """(1 + #{null >= actual}) / (1 + shifts), with a tolerance so that an equal return counts as 'as good'."""
    return (1 + int(np.sum(null >= actual - 1e-12))) / (1 + null.size)


# -- the corrections -------------------------------------------------------------------------------
def min_p_null(nulls: Sequence[np.ndarray], actuals: Sequence[float]) -> np.ndarray:
    """Draws of the best-of-N p-value when nothing has an edge. Under the null the actual signals and their
    rotations are exchangeable, so each of the 1 + shifts "worlds" (the actual one, then every rotation) gives
    every configuration the p-value `p_value` would give it there, the rank of its return among all 1 + shifts
    returns; a world's draw is the smallest over configurations. The actual world's p equals `p_value`'s
    (all nulls the same length)."""
    if not nulls:
        raise ValueError("min_p_null: no configurations")
    best: np.ndarray | None = None
    for null, actual in zip(nulls, actuals, strict=True):
        world = np.concatenate([[actual], null])
        order = np.sort(world)
        # how many of the 1 + shifts returns are at least as good as each world's (itself included)
        p = (world.size - np.searchsorted(order, world - 1e-12, side="left")) / world.size
        best = p if best is None else np.minimum(best, p)
    assert best is not None
    return best


def westfall_young(p: Sequence[float], minp_draws: np.ndarray) -> list[float]:
    """Single-step min-p adjusted p-values: the share of the worlds (the actual one among them) whose best
    p-value is at or below `p`."""
    d = np.asarray(minp_draws)
    return [int(np.sum(d <= pv + 1e-12)) / d.size for pv in p]


def holm(p: Sequence[float]) -> list[float]:
    """Holm (Bonferroni step-down) adjusted p-values, in the input order."""
    pa = np.asarray(p, dtype=np.float64)
    m = pa.size
    order = np.argsort(pa, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pa[i])))
        adj[i] = running
    return adj.tolist()


# -- walk-forward of one (data set, label, model, horizon), every threshold ---------------------------
@dataclass
class Series:
    """One market's rows: features, close, high, low; `test` says whether its rows are traded out of sample
    (False: only added to every fold's training rows, e.g. an older market for multi-symbol training)."""

    name: str
    x: np.ndarray
    close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    usable_x: np.ndarray  # rows with every feature defined


@dataclass(frozen=True)
class Config:
    dataset: str
    label: str
    model: str
    horizon: int
    threshold: float

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}/{self.model}/h{self.horizon}/t{self.threshold:g}"


@dataclass
class FoldSignals:
    """Out-of-sample closes and decisions per fold, for each threshold; plus the test windows."""

    close: list[np.ndarray]
    sides: dict[float, list[np.ndarray]]
    fold_sizes: list[int] = field(default_factory=list)


def walk_forward_signals(
    test: Series,
    extra_train: Sequence[Series],
    *,
    label: str,
    model: str,
    horizon: int,
    thresholds: Sequence[float],
    fee_rate: float,
    folds: int,
    initial_fraction: float,
    seed: int = 7,
    min_edge_bps: float | None = 0.0,
    calibrate: bool = True,
) -> FoldSignals:
    """Expanding-window folds over `test` (the splits of `training.walk_forward`); each fold's model learns
    from the earlier rows of `test` and from every row of `extra_train` (markets that end before `test`
    starts, so nothing is learned from the future), then decides on the fold's rows at each threshold.
    `calibrate`: as `training.fit_model` (the shipped model calibrates; the search may skip it for speed)."""
    y = labels_for(label, test.high, test.low, test.close, horizon, fee_rate)
    fwd = forward_returns(test.close, horizon)
    ok = test.usable_x & ~np.isnan(y)
    first = int(np.flatnonzero(test.usable_x)[0])
    extra_x, extra_y, extra_f = [], [], []
    for s in extra_train:
        ys = labels_for(label, s.high, s.low, s.close, horizon, fee_rate)
        sel = s.usable_x & ~np.isnan(ys)
        extra_x.append(s.x[sel])
        extra_y.append(ys[sel])
        extra_f.append(forward_returns(s.close, horizon)[sel])
    splits = walk_forward_splits(test.x.shape[0] - first, folds, initial_fraction, horizon)
    out = FoldSignals([], {t: [] for t in thresholds})
    for sp in splits:
        tr = np.arange(first, first + sp.train_end)
        tr = tr[ok[tr]]
        te = np.arange(first + sp.test_start, first + sp.test_end)
        xs, ys, fs = (
            np.concatenate([test.x[tr], *extra_x]),
            np.concatenate([y[tr], *extra_y]),
            np.concatenate([fwd[tr], *extra_f]),
        )
        m = fit_model(xs, ys, model, 0.5, seed, calibrate=calibrate)
        means = class_mean_returns(fs, ys)
        proba = predict_proba(m, test.x[te])
        out.close.append(test.close[te])
        out.fold_sizes.append(int(te.size))
        for t in thresholds:
            out.sides[t].append(decide(proba, means, fee_rate, t, min_edge_bps).side)
    return out


@dataclass
class Outcome:
    config: Config
    net_return_pct: float
    n_trades: int
    p_value: float
    null: np.ndarray
    actual: float = 0.0  # the unrounded net simple return
    adjusted_p: float = 1.0  # Westfall-Young min-p over the whole search
    holm_p: float = 1.0
    gate_raw: bool = False  # excess > min, p < max_p, trades >= min, before the correction
    gate_corrected: bool = False  # the same with the search-adjusted p-value


def evaluate(config: Config, signals: FoldSignals, offsets: np.ndarray, fee_rate: float) -> Outcome:
    sides = signals.sides[config.threshold]
    ret, trades = chained(signals.close, sides, config.horizon, fee_rate)
    null = null_returns(signals.close, sides, offsets, config.horizon, fee_rate)
    return Outcome(config, round(ret * 100, 4), trades, p_value(ret, null), null, ret)


def correct(
    outcomes: list[Outcome],
    *,
    min_excess_return_pct: float = 0.0,
    max_p_value: float = 0.05,
    min_trades: int = 10,
) -> dict[str, Any]:
    """Adjust every outcome's p-value for the search (in place) and apply the gate's thresholds before and after;
    returns the summary (count, method, best configuration, min-p null quantiles)."""
    if not outcomes:
        raise ValueError("no configuration to correct")
    draws = min_p_null([o.null for o in outcomes], [o.actual for o in outcomes])
    raw = [o.p_value for o in outcomes]
    for o, wy, hp in zip(outcomes, westfall_young(raw, draws), holm(raw), strict=True):
        o.adjusted_p, o.holm_p = wy, hp
        base = o.net_return_pct > min_excess_return_pct and o.n_trades >= min_trades
        o.gate_raw = base and o.p_value < max_p_value
        o.gate_corrected = base and o.adjusted_p < max_p_value
    best = min(outcomes, key=lambda o: (o.p_value, -o.net_return_pct))
    return {
        "configurations": len(outcomes),
        "method": "Westfall-Young single-step min-p over shared fold rotations (Holm beside it)",
        "shifts": int(draws.size - 1),
        "best": best.config.name,
        "best_p_raw": best.p_value,
        "best_p_adjusted": best.adjusted_p,
        "best_p_holm": best.holm_p,
        "passed_raw": sum(o.gate_raw for o in outcomes),
        "passed_corrected": sum(o.gate_corrected for o in outcomes),
        "min_p_null_quantiles": {f"p{q}": round(float(np.percentile(draws, q)), 6) for q in (1, 5, 50)},
    }


Progress = Callable[[str], None]

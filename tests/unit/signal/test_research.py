"""The counted edge search: its labels, its fast simulation, the correction for the search, and a tiny run."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.edge_search import BTC, Dataset, Grid, render_markdown, run_search
from services.signal.decision import BUY, HOLD, SELL
from services.signal.features import FeatureSpec
from services.signal.research import (
    final_level,
    holm,
    horizon_return_labels,
    min_p_null,
    p_value,
    triple_barrier_labels,
    westfall_young,
)
from services.signal.training import simulate_long_only

GATE = {"min_excess_return_pct": 0.0, "max_p_value": 0.05, "min_trades": 10}


def test_fast_simulation_equals_the_training_simulation():
    rng = np.random.default_rng(11)
    for _ in range(400):
        n, h = int(rng.integers(1, 120)), int(rng.integers(1, 12))
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        side = rng.choice([SELL, HOLD, BUY], size=n, p=[0.1, 0.7, 0.2])
        ref = simulate_long_only(close, side, h, 0.001)
        level, trades = final_level(close, side, h, 0.001)
        assert level == pytest.approx(ref.equity[-1], rel=1e-12) and trades == len(ref.trade_returns)


def test_labels_horizon_sign_and_triple_barrier_first_touch():
    close = np.array([100.0, 101.0, 100.5, 99.0, 99.5])
    y = horizon_return_labels(close, 1)
    assert y[:4].tolist() == [1, -1, -1, 1] and np.isnan(y[4])
    n = 40
    close = np.full(n, 100.0)
    close[1::2] = 100.2  # sigma of the 1-bar returns ~ 0.2 %: a 2-bar barrier ~ 0.28 %
    high, low = close.copy(), close.copy()
    high[31] = 101.0  # the upper barrier touched first from bar 30 ...
    low[32] = 99.0  # ... the lower one a bar later
    low[35] = 99.0  # from bar 34: the lower barrier first
    tb = triple_barrier_labels(high, low, close, 2, 0.001, vol_window=24)
    assert np.isnan(tb[:24]).all() and np.isnan(tb[-2:]).all()
    assert tb[30] == 1 and tb[34] == -1 and tb[26] == 0
    assert tb[31] == -1  # its next bar only touches the lower barrier


def test_identical_configurations_cost_nothing_independent_ones_cost_sidak():
    rng = np.random.default_rng(2)
    s = 1999
    null = rng.normal(0, 1, s)
    actual = float(np.quantile(null, 0.99))
    p = p_value(actual, null)
    # ten copies of one configuration: one test in fact, the search costs nothing
    same = westfall_young([p] * 10, min_p_null([null] * 10, [actual] * 10))
    assert same == pytest.approx(
        [p] * 10, abs=1e-12
    )  # (Bonferroni would say 10 p: it ignores the dependence)
    # ten independent configurations, one of them at p ~ 0.01: ~ 1 - 0.99 ** 10 ~ 0.096 (Sidak)
    nulls = [null] + [rng.normal(0, 1, s) for _ in range(9)]
    actuals = [actual] + [float(rng.normal()) for _ in range(9)]
    ps = [p_value(a, nn) for a, nn in zip(actuals, nulls, strict=True)]
    adj = westfall_young(ps, min_p_null(nulls, actuals))
    assert adj[0] == pytest.approx(1 - (1 - p) ** 10, abs=0.03)
    assert all(a >= r - 1e-12 for a, r in zip(adj, ps, strict=True))  # never below the raw p
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_a_tiny_search_counts_every_configuration_and_corrects_its_p_values():
    grid = Grid(
        datasets=(Dataset("BTC-slice", BTC, rows=2200),),
        labels=("cost_aware",),
        models=("logistic",),
        horizons=(6, 12),
        thresholds=(0.45, 0.5),
        folds=3,
        shifts=99,
    )
    assert grid.size == 4
    out = run_search(grid, FeatureSpec(), gate=GATE)
    rows, s = out["configurations"], out["summary"]
    assert len(rows) == s["configurations"] == 4 and len({r["config"] for r in rows}) == 4
    assert s["shifts"] == 99 and s["method"].startswith("Westfall-Young")
    for r in rows:
        assert r["p_value"] - 1e-9 <= r["adjusted_p"] <= 1 and r["holm_p"] >= r["p_value"] - 1e-9
        assert r["gate_corrected"] <= r["gate_raw"]  # the correction can only take a pass away
        assert r["gate_corrected"] == (
            r["net_return_pct"] > 0 and r["n_trades"] >= 10 and r["adjusted_p"] < 0.05
        )
    best = min(rows, key=lambda r: (r["p_value"], -r["net_return_pct"]))
    assert s["best"] == best["config"] and s["best_p_adjusted"] == pytest.approx(best["adjusted_p"], abs=1e-6)
    md = render_markdown(out, grid)
    assert "**4 configurations tried**" in md and md.count("| `BTC-slice/") == 4

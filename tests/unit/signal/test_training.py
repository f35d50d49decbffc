"""Labels net of fees, walk-forward splits that never leak, the trading simulation and its baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.signal.decision import BUY, HOLD, SELL, decide
from services.signal.train import run_training
from services.signal.training import (
    buy_and_hold,
    make_labels,
    max_drawdown,
    simulate_long_only,
    walk_forward_splits,
)
from tests.kit.signal import make_settings


def test_label_needs_the_move_to_beat_fees_on_both_sides():
    # 0.1 % per side: a round trip costs ~20 bps, so +15 bps is "flat", +25 bps is "up"
    close = np.array([100.0, 100.15, 100.0, 100.25, 100.0, 99.75])
    y = make_labels(close, horizon=1, fee_rate=0.001)
    assert y[0] == 0  # +15 bps: fees eat it
    assert y[2] == 1  # +25 bps beats ~20 bps of fees
    assert y[4] == -1  # -25 bps: exiting beats holding
    assert math.isnan(y[5])  # the future is unknown


def test_label_without_fees_is_just_the_sign():
    y = make_labels(np.array([100.0, 100.01, 100.0]), horizon=1, fee_rate=0.0)
    assert y[0] == 1 and y[1] == -1


@given(n=st.integers(50, 5000), folds=st.integers(1, 8), frac=st.floats(0.1, 0.8), horizon=st.integers(1, 20))
def test_walk_forward_splits_never_let_a_training_label_see_the_test_window(n, folds, frac, horizon):
    try:
        splits = walk_forward_splits(n, folds, frac, horizon)
    except ValueError:
        return
    prev_end = None
    for sp in splits:
        # the last training row's label reads close[train_end - 1 + horizon], strictly before the test start
        assert sp.train_end - 1 + horizon < sp.test_start
        assert sp.test_start < sp.test_end <= n
        if prev_end is not None:
            assert sp.test_start == prev_end  # contiguous, time-ordered, no overlap
        prev_end = sp.test_end
    assert splits[-1].test_end == n


def test_simulation_pays_fees_on_both_sides_and_holds_for_the_horizon():
    close = np.array([100.0, 101.0, 102.0, 103.0, 104.0])
    side = np.array([BUY, HOLD, HOLD, HOLD, HOLD])
    sim = simulate_long_only(close, side, horizon=2, fee_rate=0.001)
    assert len(sim.trade_returns) == 1
    assert sim.trade_returns[0] == pytest.approx(102.0 / 100.0 * 0.999 * 0.999 - 1)
    assert sim.equity[-1] == pytest.approx(1.0 + sim.trade_returns[0])


def test_sell_exits_a_long_early_and_never_shorts():
    close = np.array([100.0, 90.0, 80.0, 70.0])
    sim = simulate_long_only(close, np.array([SELL, SELL, SELL, SELL]), horizon=2, fee_rate=0.001)
    assert sim.trade_returns == [] and sim.equity[-1] == 1.0
    sim = simulate_long_only(close, np.array([BUY, SELL, HOLD, HOLD]), horizon=3, fee_rate=0.001)
    assert sim.trade_returns == [pytest.approx(0.9 * 0.999 * 0.999 - 1)]


def test_buy_and_hold_and_drawdown():
    eq = buy_and_hold(np.array([100.0, 50.0, 100.0]), fee_rate=0.001)
    assert eq[-1] == pytest.approx(0.999 * 0.999)
    assert max_drawdown(np.array([1.0, 2.0, 1.0, 3.0])) == pytest.approx(0.5)


def test_decide_holds_below_threshold_and_reports_edge_net_of_fees():
    means = np.array([-0.01, 0.0, 0.01])  # class mean log returns
    proba = np.array([[0.1, 0.3, 0.6], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33]])
    d = decide(proba, means, fee_rate=0.001, threshold=0.45)
    assert list(d.side) == [BUY, SELL, HOLD]
    assert d.edge_bps[0] == pytest.approx((0.005 - -2 * math.log(0.999)) * 1e4)
    assert "below threshold" in d.reason[2]
    d = decide(proba, means, fee_rate=0.001, threshold=0.45, allow_buy=False)
    assert list(d.side) == [HOLD, SELL, HOLD]
    d = decide(proba, means, fee_rate=0.001, threshold=0.45, min_edge_bps=100)
    assert list(d.side) == [HOLD, HOLD, HOLD]


def test_training_on_real_btcusdt_writes_the_report_against_buy_and_hold_and_no_trade(tmp_path):
    settings = make_settings(tmp_path)
    train = settings.signal.train.model_copy(update={"data": "data/ohlcv/BTCUSDT-1h.csv", "folds": 3})
    path = run_training(settings, train=train, progress=lambda m: None)
    report = json.loads((path / "report.json").read_text())
    meta = json.loads((path / "metadata.json").read_text())
    assert {"model", "buy_and_hold", "no_trade"} <= set(report)
    for key in ("total_return_pct", "max_drawdown_pct", "n_trades", "hit_rate", "precision_buy"):
        assert key in report["model"]
    assert report["no_trade"]["total_return_pct"] == 0.0
    assert {"version", "sha256", "features", "train_window", "label", "metrics", "reference"} <= set(meta)
    assert set(meta["reference"]["features"]) == set(meta["features"]["names"])
    assert meta["timeframe"] == "1h" and meta["data"]["kind"] == "file"
    assert (path / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "buy and hold" in (path / "report.md").read_text()
    # the decision rule and what it was evaluated on belong to the artefact
    assert meta["decision"] == {"probability_threshold": 0.42, "min_expected_edge_bps": 0.0}
    assert meta["symbols"] == ["BTC/USDT"]
    assert meta["data_span"]["from"].startswith("2021-10-01") and meta["data_span"]["to"].startswith(
        "2022-10-31"
    )
    gate = meta["gate"]
    assert {"passed", "p_value", "net_return", "reasons", "checks", "basis", "null"} <= set(gate)
    assert gate["net_return"] == report["model"]["total_return_pct"] and 0 < gate["p_value"] <= 1
    # promoted exactly when the gate passed
    promoted = (tmp_path / "current").exists() and (tmp_path / "current").read_text().strip() == path.name
    assert promoted == gate["passed"]
    # the drift replay of the 2022 crash is in the report
    periods = report["drift_replay"]["periods"]
    assert any(p["from"] < "2022-07-01" and (p["to"] is None or p["to"] > "2022-05-01") for p in periods)


probas = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).filter(lambda t: sum(t) > 0),
    min_size=1,
    max_size=20,
).map(lambda rows: np.array([np.array(r) / sum(r) for r in rows]))


@given(proba=probas, threshold=st.floats(0, 1), allow_buy=st.booleans())
def test_decide_never_trades_below_threshold_nor_against_the_likelier_side(proba, threshold, allow_buy):
    d = decide(proba, np.array([-0.01, 0.0, 0.01]), 0.001, threshold, allow_buy=allow_buy)
    for (p_down, _, p_up), side, prob in zip(proba, d.side, d.probability, strict=True):
        if side == BUY:
            assert allow_buy and p_up >= threshold and p_up >= p_down and prob == p_up
        if side == SELL:
            assert p_down >= threshold and p_down > p_up and prob == p_down
        assert 0 <= prob <= 1

"""The backtest runs the services' cores: settings of those cores change what it does, the fast inference
path decides exactly as the live one, every refusal and breaker trip is recorded, bad input is refused."""

from __future__ import annotations

import json
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from backtest.engine import Backtest, Series, price_places
from backtest.report import null_p_value
from backtest.run import BacktestError, apply_overrides, load_series, null_shifts, run_backtest
from libs.common.ohlcv import OhlcvError
from tests.kit.backtest import BTC_1H, DATA

WINDOW = (1_633_046_400_000 + 2000 * 3_600_000, 1_633_046_400_000 + 2800 * 3_600_000)  # 800 bars of 2021-22


def _series(btc_1h, window=WINDOW) -> list[Series]:
    return [Series.from_ohlcv(btc_1h.between(*window), "BTC/USDT")]


def _orders(rec) -> list[tuple]:
    return [(o["symbol"], o["side"], o["quantity"], o["limit"]) for o in rec.orders]


def _fills(rec) -> list[tuple]:
    return [(f["symbol"], f["side"], f["quantity"], f["price"], f["fee"]) for f in rec.fills]


def test_price_places_match_the_file():
    assert price_places(np.array([[43820.01, 43900.5, 43000.0, 43100.1]])) == 2
    assert price_places(np.array([[0.00123, 0.0013, 0.0012, 0.00125]])) == 5


def _record(rec) -> dict:
    """Everything a run recorded, the order ids aside (they derive from uuid signal ids)."""
    drop = ("client_order_id", "trade_id")
    out = {
        k: getattr(rec, k)
        for k in (
            "times",
            "equity",
            "exposure",
            "signals",
            "approved",
            "refusals",
            "refusals_first",
            "not_sent",
            "rejected",
            "breaker_events",
            "state_changes",
            "start_equity",
            "bars",
        )
    }
    out["orders"] = [{k: v for k, v in o.items() if k not in drop} for o in rec.orders]
    out["fills"] = [{k: v for k, v in f.items() if k not in drop} for f in rec.fills]
    out["sides"] = {s: a.tolist() for s, a in rec.sides.items()}
    return out


def test_precomputed_inference_decides_exactly_as_the_live_buffers(btc_model, btc_1h, markets):
    """The batch path (features, model, decisions and drift bins of the whole history at once) against the
    live one (each bar's buffer, `decide` and `DriftMonitor.observe` per bar): the same record, event by event."""
    settings, model = btc_model
    fast_bt = Backtest(settings, _series(btc_1h), model, markets, precompute=True)
    slow_bt = Backtest(settings, _series(btc_1h), model, markets, precompute=False)
    fast, slow = fast_bt.run(), slow_bt.run()
    assert fast_bt.signal.precomputed is not None and slow_bt.signal.precomputed is None
    assert _orders(fast) and _fills(fast) and fast.breaker_events  # something to compare
    assert _record(fast) == _record(slow)
    # drift saw the same rows in the same bins, and checked (a positive control: the window filled)
    df, ds = fast_bt.signal.drift, slow_bt.signal.drift
    assert df is not None and ds is not None and df.last is not None
    assert df.rows_seen == ds.rows_seen > 0 and (df._window_flat == ds._window_flat).all()
    assert df.last.scores == ds.last.scores


@pytest.mark.parametrize("values", [1, 7 * 5 * 30, 10**9])  # one row, a few rows, every row per chunk
def test_precomputed_features_taken_in_chunks_are_the_whole_batch(btc_model, btc_1h, monkeypatch, values):
    """The windows' features are computed a chunk of rows at a time (memory: a year of 1-minute bars, or a
    warm-up of thousands of bars): every chunking gives the rows of one batch, bit for bit."""
    from datetime import UTC, datetime

    from services.signal.core import Precomputed

    settings, model = btc_model
    s = Series.from_ohlcv(btc_1h, "BTC/USDT")
    times = [datetime.fromtimestamp(t / 1000, UTC) for t in s.open_ms.tolist()]
    whole = Precomputed(model, {"BTC/USDT": (times, s.ohlcv)}, settings.signal, None)
    monkeypatch.setattr(Precomputed, "WINDOW_VALUES", values)
    chunked = Precomputed(model, {"BTC/USDT": (times, s.ohlcv)}, settings.signal, None)
    (_, x0, p0), (_, x1, p1) = whole._rows["BTC/USDT"], chunked._rows["BTC/USDT"]
    assert np.isfinite(x0[-1]).all() and np.isnan(x0[0]).all()  # the warm-up rows, then features
    assert x0.tobytes() == x1.tobytes() and p0.tobytes() == p1.tobytes()


def test_risk_sizing_and_caps_of_the_config_bind_every_order(btc_model, btc_1h, markets):
    settings, model = btc_model
    small = apply_overrides(settings, ["risk.max_notional_usdt=20", "risk.order_fraction_of_equity=0.5"])
    rec = Backtest(small, _series(btc_1h), model, markets).run()
    buys = [o for o in rec.orders if o["side"] == "BUY"]
    assert buys and all(o["quantity"] * o["limit"] <= Decimal("20") for o in buys)
    assert all(o["quantity"] * o["limit"] >= Decimal("5") for o in buys)  # exchange min notional (filters)
    # a SELL never exceeds what is held (spot): no paper rejection for lack of balance
    assert rec.rejected.get("insufficient_balance", 0) == 0


def test_a_tiny_daily_budget_trips_the_breaker_and_refuses_by_reason(btc_model, btc_1h, markets):
    settings, model = btc_model
    tight = apply_overrides(
        settings,
        ["risk.daily_loss_budget_usdt=0.01", "risk.cooldown_after_loss_s=0", "risk.loss_streak_limit=1000"],
    )
    rec = Backtest(tight, _series(btc_1h), model, markets).run()
    trips = Counter(e["breaker"] for e in rec.breaker_events if e["event"] == "tripped")
    assert trips["daily_loss"] >= 1
    assert rec.refusals["daily_loss"] >= 1 or rec.refusals["trading_reducing"] >= 1
    loose = Backtest(
        settings, _series(btc_1h), model, markets
    ).run()  # positive control: same data, default budget
    assert not any(e["breaker"] == "daily_loss" for e in loose.breaker_events)
    assert len(loose.fills) > len(rec.fills)


def test_fees_are_the_paper_brokers_own(btc_model, btc_1h, markets):
    settings, model = btc_model
    rec = Backtest(settings, _series(btc_1h), model, markets).run()
    assert rec.fills
    for f in rec.fills:
        assert f["fee"] == (f["quantity"] * f["price"] * Decimal("0.001")).quantize(
            Decimal("0.00000001"), ROUND_HALF_UP
        )
    free = apply_overrides(settings, ["execution.taker_fee_rate=0", "execution.maker_fee_rate=0"])
    rec0 = Backtest(free, _series(btc_1h), model, markets).run()
    assert all(f["fee"] == 0 for f in rec0.fills)


def test_null_shifts_and_p_value():
    assert null_shifts(100, 4) == [20, 40, 60, 80]
    assert null_shifts(1, 5) == [] and null_shifts(100, 0) == []
    assert null_p_value(5.0, [1.0, 2.0, 6.0]) == 0.5
    assert null_p_value(10.0, [1.0, 2.0, 3.0]) == 0.25


def test_run_writes_the_report_files_with_every_figure(btc_model, btc_1h, markets, tmp_path):
    settings, model = btc_model
    out = run_backtest(
        settings,
        _series(btc_1h, (WINDOW[0], WINDOW[0] + 400 * 3_600_000)),
        model,
        markets,
        null_runs=3,
        bt_id="t1",
        out_root=tmp_path,
    )
    d = tmp_path / "t1"
    assert {p.name for p in d.iterdir()} == {"report.json", "report.md", "equity.png", "trades.csv"}
    r = json.loads((d / "report.json").read_text())
    for k in (
        "net_return_pct",
        "gross_return_pct",
        "fees_usdt",
        "turnover",
        "exposure_avg_pct",
        "max_drawdown_pct",
        "sharpe",
        "sortino",
    ):
        assert k in r["model"]
    assert r["buy_and_hold"]["net_return_pct"] != 0 and r["no_trade"]["net_return_pct"] == 0
    assert r["null_baseline"]["runs"] == 3 and 0 < r["null_baseline"]["p_value"] <= 1
    assert "BTC/USDT" in r["per_symbol"] and "refusals_by_reason" in r["verdicts"]
    assert len((d / "trades.csv").read_text().splitlines()) == len(out.record.fills) + 1


def test_bad_inputs_are_refused_with_a_clear_reason(btc_model, btc_1h, markets, tmp_path):
    settings, model = btc_model
    with pytest.raises(OhlcvError, match="XRP/ETH is not in configs/markets"):
        load_series([(DATA / "XRP_ETH-5m.json", "XRP/ETH")], markets)
    with pytest.raises(OhlcvError, match="not on the 1d grid"):
        load_series([(BTC_1H, "BTC/USDT")], markets, timeframe="1d")
    five = load_series([(DATA / "XRP_ETH-5m.json", "BTC/USDT")], markets)
    with pytest.raises(ValueError, match="decides on 1h candles but the data is 5m"):
        Backtest(settings, five, model, markets)
    with pytest.raises(BacktestError, match="no such setting"):
        apply_overrides(settings, ["risk.no_such_key=1"])
    with pytest.raises(BacktestError, match="max_notional_usdt"):
        apply_overrides(settings, ["risk.max_notional_usdt=-5"])


def test_training_walk_forward_folds_are_traded_by_the_full_stack(tmp_path):
    import json as _json

    from services.signal.train import run_training
    from tests.kit.backtest import settings_for

    settings = settings_for(tmp_path)
    path = run_training(settings, progress=lambda m: None, drift_replay=False, full_stack=True, promote=False)
    report = _json.loads((path / "report.json").read_text())
    meta = _json.loads((path / "metadata.json").read_text())
    assert report["out_of_sample"]["evaluation"].startswith("full stack")
    assert report["decision"]["simulation"] == report["out_of_sample"]["evaluation"]
    m = report["model"]
    assert m["fills"] > 0 and m["fees_usdt"] > 0 and meta["metrics"]["model"] == m
    for fold in report["folds"]:
        assert "refusals_by_reason" in fold["model"] and "simplified_simulation" in fold
    simple = report["simplified_simulation"]
    assert simple["what"].startswith("simplified simulation (not the traded policy)")
    assert simple["total_return_pct"] != m["total_return_pct"]
    quick = run_training(settings, progress=lambda m: None, drift_replay=False, promote=False)
    assert _json.loads((quick / "report.json").read_text())["out_of_sample"]["evaluation"].startswith(
        "simplified"
    )


def test_training_refuses_a_file_with_gaps_unless_allowed(tmp_path):
    from services.signal.train import run_training
    from tests.kit.backtest import settings_for

    rows = BTC_1H.read_text().splitlines()
    holed = tmp_path / "BTCUSDT-1h.csv"
    holed.write_text("\n".join([rows[0], *rows[1:1500], *rows[1510:3000]]) + "\n")
    settings = settings_for(tmp_path / "models")
    train = settings.signal.train.model_copy(update={"data": str(holed)})
    with pytest.raises(OhlcvError, match=r"BTCUSDT-1h.csv: row 1500: gap: 10 bar\(s\) missing"):
        run_training(settings, train=train, progress=lambda m: None, drift_replay=False, promote=False)
    path = run_training(
        settings, train=train, progress=lambda m: None, drift_replay=False, promote=False, allow_gaps=True
    )
    assert (path / "report.json").exists()

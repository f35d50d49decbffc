"""The engine: candles from ticks in O(1), warm-up, gates (stale, old model, spread), measurement mode."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts import Candle, Tick
from services.signal.core import Bar, CandleBuilder, SignalEngine
from tests.kit.signal import bar_rounds

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _tick(sym: str, t: datetime, price: str, vol: str = "1", spread: str = "0.01") -> Tick:
    p = Decimal(price)
    return Tick(
        ts=t,
        symbol=sym,
        bid=p - Decimal(spread) / 2,
        ask=p + Decimal(spread) / 2,
        last=p,
        volume=Decimal(vol),
    )


def test_candle_builder_closes_a_bar_on_the_first_tick_of_the_next_interval():
    b = CandleBuilder(1)
    assert b.on_tick(_tick("A/USDT", T0 + timedelta(milliseconds=100), "10")) is None
    assert b.on_tick(_tick("A/USDT", T0 + timedelta(milliseconds=500), "12", "2")) is None
    assert b.on_tick(_tick("A/USDT", T0 + timedelta(milliseconds=900), "9")) is None
    trigger = _tick("A/USDT", T0 + timedelta(milliseconds=1100), "11")
    bar = b.on_tick(trigger)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (10.0, 12.0, 9.0, 9.0, 4.0)
    assert bar.open_time == T0 and bar.trigger_id == trigger.id and bar.trigger_ts == trigger.ts
    assert b.on_tick(_tick("A/USDT", T0 + timedelta(milliseconds=950), "50")) is None  # late: ignored


def _bars(n: int, symbols: list[str], seed: int = 5) -> list[list[Bar]]:
    return bar_rounds(n, symbols, seed)


def _any_side_engine(settings, model, **cfg) -> SignalEngine:
    """Threshold 0 and no edge gate, in the configuration and in the model's own rule: always a side."""
    loose = replace(model, probability_threshold=0.0, min_expected_edge_bps=None)
    return SignalEngine(
        settings.signal.model_copy(
            update={"probability_threshold": 0.0, "min_expected_edge_bps": None, **cfg}
        ),
        loose,
    )


def _run(engine, rounds, now=T0):
    sigs = []
    for bars in rounds:
        sigs += engine.on_bars(bars, now).signals
    return sigs


def test_no_signal_but_hold_until_warmed_up_then_decisions_carry_the_trigger(trained):
    settings, model = trained
    engine = _any_side_engine(settings, model)
    rounds = _bars(40, ["A/USDT"])
    sigs = _run(engine, rounds)
    warm = model.spec.warmup_bars
    assert all(s.side == "HOLD" and "warming up" in s.reason for s in sigs[: warm - 1])
    assert all(s.side in ("BUY", "SELL") for s in sigs[warm - 1 :])  # threshold 0: always a side
    assert sigs[-1].tick_id == "tick-A/USDT-39" and sigs[-1].model_version == model.version
    assert 0 <= sigs[-1].probability <= 1


def test_stale_symbol_holds(trained):
    settings, model = trained
    engine = _any_side_engine(settings, model)
    engine.set_stale("A/USDT", True)
    sigs = _run(engine, _bars(40, ["A/USDT", "B/USDT"]))
    assert {s.side for s in sigs if s.symbol == "A/USDT"} == {"HOLD"}
    assert any(s.reason == "market data stale" for s in sigs)
    assert {s.side for s in sigs if s.symbol == "B/USDT"} > {"HOLD"}


def test_old_model_produces_no_buy(trained):
    settings, model = trained
    engine = _any_side_engine(settings, model, max_model_age_h=1)
    sigs = _run(engine, _bars(60, ["A/USDT", "B/USDT", "C/USDT"]), now=model.trained_at + timedelta(hours=2))
    assert "BUY" not in {s.side for s in sigs}
    assert "SELL" in {s.side for s in sigs}


def test_without_a_model_everything_holds(trained):
    settings, _ = trained
    engine = SignalEngine(settings.signal, None)
    sigs = _run(engine, _bars(3, ["A/USDT"]))
    assert [s.side for s in sigs] == ["HOLD"] * 3 and "no trusted model" in sigs[0].reason


def test_wide_spread_holds(trained):
    settings, model = trained
    engine = _any_side_engine(settings, model, max_spread_bps=5)
    engine.on_tick(_tick("A/USDT", T0, "100", spread="1"), T0)  # 100 bps
    sigs = _run(engine, _bars(30, ["A/USDT"]))
    assert {s.side for s in sigs} == {"HOLD"} and "spread" in sigs[-1].reason


def test_batch_of_many_symbols_is_one_model_call(trained, monkeypatch):
    settings, model = trained
    engine = SignalEngine(settings.signal, model)
    symbols = [f"S{i:03d}/USDT" for i in range(50)]
    rounds = _bars(30, symbols)
    calls = []
    real = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda x: calls.append(len(x)) or real(x))
    result = None
    for bars in rounds:
        result = engine.on_bars(bars, T0)
    assert len(result.signals) == 50 and calls[-1] == 50
    assert len(calls) == 30 - model.spec.warmup_bars + 1


def test_duplicate_and_repeated_bars_in_one_batch_are_handled_in_order(trained):
    settings, model = trained
    engine = SignalEngine(settings.signal, model)
    rounds = _bars(30, ["A/USDT"])
    flat = [b[0] for b in rounds]
    res = engine.on_bars(flat + [flat[-1]], T0)  # 30 bars of one symbol in one batch, plus a duplicate
    assert len(res.signals) == 30
    assert engine.states["A/USDT"].n == model.spec.warmup_bars


def test_measurement_mode_alternates_sides_every_nth_tick_with_the_tick_ids(trained):
    settings, model = trained
    engine = SignalEngine(settings.signal.model_copy(update={"every_nth_tick": 3}), model)
    ticks = [_tick("A/USDT", T0 + timedelta(milliseconds=10 * i), "100") for i in range(9)]
    out = [engine.on_tick(t, T0)[1] for t in ticks]
    sigs = [s for s in out if s is not None]
    assert [s.side for s in sigs] == ["BUY", "SELL", "BUY"]
    assert [s.tick_id for s in sigs] == [ticks[2].id, ticks[5].id, ticks[8].id]
    assert sigs[0].tick_ts == ticks[2].ts


def test_measurement_mode_counts_ticks_over_all_symbols_so_decisions_do_not_burst(trained):
    settings, model = trained
    engine = SignalEngine(settings.signal.model_copy(update={"every_nth_tick": 4}), model)
    symbols = ["A/USDT", "B/USDT", "C/USDT"]
    # the symbols tick together (one step = one tick each): decisions still come every 4th tick received
    ticks = [
        _tick(sym, T0 + timedelta(milliseconds=10 * step), "100") for step in range(8) for sym in symbols
    ]
    sigs = [(i, s) for i, t in enumerate(ticks) if (s := engine.on_tick(t, T0)[1]) is not None]
    assert [i for i, _ in sigs] == [3, 7, 11, 15, 19, 23]
    assert [s.symbol for _, s in sigs] == ["A/USDT", "B/USDT", "C/USDT", "A/USDT", "B/USDT", "C/USDT"]
    assert [s.side for _, s in sigs] == [
        "BUY",
        "BUY",
        "BUY",
        "SELL",
        "SELL",
        "SELL",
    ]  # per symbol alternation


def test_candles_from_market_data_replace_bars_built_from_ticks(trained):
    settings, model = trained
    engine = SignalEngine(settings.signal, model)
    c = Candle(
        ts=T0,
        symbol="A/USDT",
        timeframe=model.timeframe,
        open_time=T0,
        close_time=T0 + timedelta(seconds=1),
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal(1),
        close=Decimal(2),
        volume=Decimal(3),
    )
    bar = engine.on_candle(c)
    assert bar.trigger_id == c.id and bar.close == 2.0
    assert engine.on_tick(_tick("A/USDT", T0 + timedelta(seconds=5), "1"), T0)[0] is None
    other_tf = c.model_copy(update={"timeframe": "1m"})
    assert engine.on_candle(other_tf) is None


def test_drift_monitor_sees_every_predicted_row(trained):
    settings, model = trained
    engine = SignalEngine(settings.signal, model)
    _run(engine, _bars(40, ["A/USDT", "B/USDT"]))
    assert engine.drift.rows_seen == 2 * (40 - model.spec.warmup_bars + 1)
    assert engine.drift.rows_in_window == engine.drift.rows_seen
    assert len(engine.drift._chunks) == 40 - model.spec.warmup_bars + 1  # one chunk per bar time
    last = engine.drift._chunks[-1][2]  # every row binned in every column, no NaN dropped
    assert all(last[lo:hi].sum() == 2 for lo, hi in engine.drift._bounds)


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 700), st.integers(1, 10_000), st.integers(0, 1000)), min_size=1, max_size=60
    )
)
def test_candle_builder_conserves_volume_and_keeps_ohlc_consistent(steps):
    b = CandleBuilder(1)
    t, bars, total = T0, [], 0
    for dt_ms, price, vol in steps:
        t += timedelta(milliseconds=dt_ms)
        bar = b.on_tick(_tick("A/USDT", t, f"{price}.00", str(vol), spread="0.01"))
        total += vol
        if bar is not None:
            bars.append(bar)
    open_volume = b.v if b.start is not None else 0.0
    assert sum(x.volume for x in bars) + open_volume == total
    for x in bars:
        assert x.low <= min(x.open, x.close) <= max(x.open, x.close) <= x.high
    assert [x.open_time for x in bars] == sorted({x.open_time for x in bars})


def test_a_gap_in_candles_is_not_glued_the_symbol_warms_up_again(trained):
    settings, model = trained
    engine = _any_side_engine(settings, model)
    rounds = _bars(100, ["A/USDT"])
    before = _run(engine, rounds[:40])
    assert before[-1].side in ("BUY", "SELL")
    # bar 40..44 never arrive: the next bars follow a 5-second hole
    after = _run(engine, rounds[45:])
    warm = model.spec.warmup_bars
    assert all(s.side == "HOLD" and "after a gap in candles" in s.reason for s in after[: warm - 1])
    assert after[warm - 1].side in ("BUY", "SELL")
    # control: the same bars without the hole decide at once
    again = _any_side_engine(settings, model)
    contiguous = _run(again, rounds[:40]) and _run(again, rounds[40:])
    assert contiguous[0].side in ("BUY", "SELL")


def test_live_ticker_snapshots_never_become_the_models_bars(trained):
    settings, model = trained
    live = SignalEngine(
        settings.signal.model_copy(update={"probability_threshold": 0.0}), model, bars_from_ticks=False
    )
    demo = SignalEngine(settings.signal.model_copy(update={"probability_threshold": 0.0}), model)
    closed = {"live": 0, "demo": 0}
    for k in range(30):
        t = _tick("A/USDT", T0 + timedelta(milliseconds=400 * k), str(100 + k % 3))
        closed["live"] += live.on_tick(t, t.ts)[0] is not None
        closed["demo"] += demo.on_tick(t, t.ts)[0] is not None
    assert closed["live"] == 0 and closed["demo"] > 0  # control: the synthetic feed's ticks do build bars

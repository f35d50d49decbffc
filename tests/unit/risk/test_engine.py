"""The risk engine end to end in memory: gates, sizing to filters, throttles, breakers, trading states."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts import BreakerTripped, TradingStateChanged
from libs.common.markets import load_markets
from services.risk.core import RiskEngine, order_side
from tests.unit.risk.conftest import PRICES, T0, feed, fill, make_engine, signal

MARKETS = load_markets()


def test_fresh_engine_approves_a_buy_sized_to_a_fraction_of_equity(engine):
    v = engine.decide(signal(), T0).verdict
    assert v.approved and v.reasons == []
    assert v.quantity == Decimal("0.00082")  # 10000 * 0.005 = 50 USDT at the 60300 limit, down to 0.00001
    assert v.price_limit == Decimal("60300.00") and v.expires_at == T0 + timedelta(seconds=2)


def test_unknown_account_kill_switch_or_database_refuse():
    e = make_engine()
    e.account_known = False
    assert "account_state_unknown" in e.decide(signal(), T0).verdict.reasons
    e = make_engine()
    e.db_ok = False
    assert "database_unavailable" in e.decide(signal(), T0).verdict.reasons
    e = make_engine()
    e.kill_known = False
    assert "kill_switch_unknown" in e.decide(signal(), T0).verdict.reasons


def test_duplicate_signal_is_refused(engine):
    s = signal()
    assert engine.decide(s, T0).verdict.approved
    assert engine.decide(s, T0).verdict.reasons == ["duplicate_signal"]


def test_a_duplicate_after_the_id_memory_is_still_refused_as_stale():
    from libs.common.settings import RiskSettings

    engine = make_engine()
    s = signal()
    assert engine.decide(s, T0).verdict.approved
    later = T0 + timedelta(seconds=engine.cfg.duplicate_signal_window_s + 1)
    feed(engine, later)
    assert engine.decide(s, later).verdict.reasons == ["stale_signal"]  # forgotten id, but far too old
    assert len(engine.seen_signals) == 1  # the old id was dropped: memory stays bounded by the window
    with pytest.raises(ValueError, match="duplicate_signal_window_s"):
        RiskSettings(duplicate_signal_window_s=1, max_signal_age_s=2)


def test_a_sell_needs_a_position_and_never_exceeds_it(engine):
    assert engine.decide(signal(side="SELL"), T0).verdict.reasons == ["no_position"]
    engine.on_fill(fill("ETH/USDT", "BUY", "0.0123", "3000"), T0)
    v = engine.decide(signal("ETH/USDT", "SELL"), T0).verdict
    assert v.approved and v.quantity == Decimal("0.0123")
    # the pending sell is reserved: a second sell finds nothing left to sell
    assert engine.decide(signal("ETH/USDT", "SELL"), T0).verdict.reasons == ["no_position"]


def test_a_verdict_names_the_side_of_the_order_approved_or_refused(engine):
    sell = engine.decide(signal(side="SELL"), T0).verdict
    assert sell.reasons == ["no_position"] and sell.side == "SELL"
    buy = engine.decide(signal(price=Decimal("61000")), T0).verdict
    assert buy.reasons == ["price_collar"] and buy.side == "BUY"
    with pytest.raises(ValueError, match="HOLD"):  # a HOLD asks for no order
        order_side(signal(side="HOLD"))


def test_unknown_market_and_fat_finger_price_are_refused(engine):
    feed(engine, T0, {"SOL/USDT": Decimal("150")})
    assert "unknown_market" in engine.decide(signal("SOL/USDT", price=Decimal("150")), T0).verdict.reasons
    assert engine.decide(signal(price=Decimal("61000")), T0).verdict.reasons == ["price_collar"]


def test_stale_symbol_is_held_and_fresh_data_releases_it(engine):
    later = T0 + timedelta(seconds=11)
    engine.on_heartbeat("market_data", later)
    engine.on_heartbeat("execution", later)
    v = engine.decide(signal(ts=later), later).verdict
    assert "stale_data" in v.reasons
    feed(engine, later)
    assert engine.decide(signal(ts=later), later).verdict.approved


def test_exposure_caps_and_free_balance_bind_the_size():
    e = make_engine(
        max_exposure_per_symbol_usdt=Decimal("60"),
        max_notional_usdt=Decimal("1000"),
        order_fraction_of_equity=Decimal("0.5"),
    )
    v = e.decide(signal(), T0).verdict
    assert v.approved and v.quantity * v.price_limit <= Decimal("60")
    assert e.decide(signal(), T0).verdict.reasons == ["max_exposure_symbol"]  # headroom below min notional
    e = make_engine(starting_equity_usdt=Decimal("20"), order_fraction_of_equity=Decimal("1"))
    e.on_fill(fill("ETH/USDT", "BUY", "0.005", "3000", fee="0"), T0)  # 15 USDT spent, 5 left
    assert e.decide(signal(), T0).verdict.reasons == ["insufficient_balance"]


def test_max_open_positions(engine):
    e = make_engine(max_open_positions=1)
    e.on_fill(fill("ETH/USDT", "BUY", "0.01", "3000"), T0)
    assert e.decide(signal(), T0).verdict.reasons == ["max_open_positions"]
    assert e.decide(signal("ETH/USDT"), T0).verdict.approved  # adding to the one held is fine


def test_order_rate_is_throttled_per_symbol_then_globally():
    e = make_engine(
        max_orders_per_10s=3,
        max_orders_per_10s_per_symbol=2,
        order_loop_trip_per_10s=100,
        max_exposure_per_symbol_usdt=Decimal("10000"),
        max_total_exposure_usdt=Decimal("10000"),
    )
    out = [e.decide(signal(), T0 + timedelta(milliseconds=i)).verdict for i in range(3)]
    assert [v.approved for v in out] == [True, True, False]
    assert out[2].reasons == ["order_rate_limited_symbol"]
    assert e.decide(signal("ETH/USDT"), T0).verdict.approved
    assert e.decide(signal("XRP/USDT"), T0).verdict.reasons == ["order_rate_limited"]
    later = T0 + timedelta(seconds=10, milliseconds=500)
    feed(e, later)
    assert e.decide(signal(ts=later), later).verdict.approved  # the window slid


def test_order_loop_halts_and_only_a_release_after_it_clears_resumes():
    e = make_engine(
        order_loop_trip_per_10s=5,
        max_exposure_per_symbol_usdt=Decimal("10000"),
        max_total_exposure_usdt=Decimal("10000"),
    )
    events = []
    for i in range(5):
        d = e.decide(signal(), T0 + timedelta(milliseconds=i))
        events += d.events
    assert d.verdict.reasons == ["order_loop"] and e.sm.state == "HALTED"
    assert any(
        isinstance(ev, BreakerTripped) and ev.breaker == "order_loop" and ev.effect == "HALTED"
        for ev in events
    )
    _, refused = e.release(T0 + timedelta(seconds=1))
    assert refused and e.sm.state == "HALTED"  # the loop is still in the window
    later = T0 + timedelta(seconds=11)
    feed(e, later)
    e.evaluate(later)
    assert e.sm.state == "HALTED"  # cleared breaker, but no release yet
    events, refused = e.release(later)
    assert not refused and e.sm.state == "REDUCING"  # cooldown after a breaker cleared
    assert any(isinstance(ev, TradingStateChanged) and ev.previous == "HALTED" for ev in events)


def test_daily_loss_budget_reduces_until_midnight_and_sells_still_pass():
    e = make_engine(daily_loss_budget_usdt=Decimal("5"))
    e.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    e.on_fill(fill("BTC/USDT", "BUY", "0.001", "60000"), T0)
    e.on_fill(fill("BTC/USDT", "SELL", "0.001", "55000"), T0)  # -5 - fees
    e.evaluate(T0)
    assert e.sm.state == "REDUCING" and "daily_loss" in e.board.active
    assert "trading_reducing" in e.decide(signal("XRP/USDT"), T0).verdict.reasons
    assert e.decide(signal("ETH/USDT", "SELL"), T0).verdict.approved
    midnight = T0.replace(hour=0) + timedelta(days=1, seconds=1)
    feed(e, midnight)
    e.evaluate(midnight)
    assert "daily_loss" not in e.board.active
    assert "cooldown_after_breaker" in e.board.active  # REDUCING a little longer, then ACTIVE
    after = midnight + timedelta(seconds=121)
    feed(e, after)
    e.evaluate(after)
    assert e.sm.state == "ACTIVE"


def test_losing_trade_cools_the_symbol_down_for_buys_only():
    e = make_engine()
    e.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    e.on_fill(fill("ETH/USDT", "SELL", "0.01", "2990"), T0)
    v = e.decide(signal("ETH/USDT"), T0).verdict
    assert v.reasons == ["cooldown_after_loss"]
    assert e.decide(signal("ETH/USDT", "SELL"), T0).verdict.approved


def test_drift_and_volatility_reduce():
    e = make_engine()
    e.on_drift(None, True, "psi 0.4")
    e.evaluate(T0)
    assert e.sm.state == "REDUCING" and e.snapshot(T0).market_drift_detected
    e = make_engine(vol_min_samples=10, vol_short_samples=5, vol_long_samples=200)
    t = T0
    px = 3000.0
    for i in range(106):  # calm, then wild
        t += timedelta(seconds=1)
        px *= 1.0001 if i % 2 else 0.9999
        if i >= 100:
            px *= 1.02 if i % 2 else 0.98
        feed(
            e,
            t,
            {
                "ETH/USDT": Decimal(str(round(px, 2))),
                "BTC/USDT": PRICES["BTC/USDT"],
                "XRP/USDT": PRICES["XRP/USDT"],
            },
        )
    e.evaluate(t)
    assert "volatility" in e.board.active and e.sm.state == "REDUCING"


def test_volatility_divides_the_size():
    calm, wild = make_engine(), make_engine()
    wild.vol.ratio = lambda sym: 2.0  # type: ignore[method-assign]
    a = calm.decide(signal(), T0).verdict.quantity
    b = wild.decide(signal(), T0).verdict.quantity
    assert b < a and b == MARKETS.round_quantity("BTC/USDT", Decimal("25") / Decimal("60300"))


def test_snapshot_restores_breakers_budgets_and_state():
    e = make_engine(daily_loss_budget_usdt=Decimal("1"))
    e.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    e.on_fill(fill("ETH/USDT", "SELL", "0.02", "2900"), T0)
    e.evaluate(T0)
    snap = e.snapshot(T0)
    r = RiskEngine(e.cfg, MARKETS, list(PRICES), T0)
    r.restore(type(snap).model_validate_json(snap.model_dump_json()))
    r.set_kill_switch(False, True, T0)
    feed(r, T0)
    assert r.sm.state == "REDUCING" and "daily_loss" in r.board.active
    assert r.book.daily_realized == e.book.daily_realized < 0
    assert r.board.active["daily_loss"].since == e.board.active["daily_loss"].since


# -- property: sizing ------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    symbol=st.sampled_from(list(PRICES)),
    side=st.sampled_from(["BUY", "SELL"]),
    equity=st.decimals(min_value=10, max_value=1_000_000, places=2),
    fraction=st.decimals(min_value=Decimal("0.0001"), max_value=1, places=4),
    held=st.decimals(min_value=0, max_value=100, places=6),
    drift_bps=st.integers(min_value=-90, max_value=90),
)
def test_approved_orders_are_on_filters_within_caps_and_never_sell_more_than_held(
    symbol, side, equity, fraction, held, drift_bps
):
    e = make_engine(starting_equity_usdt=equity, order_fraction_of_equity=fraction)
    price = PRICES[symbol]
    if held > 0:
        e.on_fill(fill(symbol, "BUY", str(held), str(price), fee="0"), T0)
    sig_price = (price * (1 + Decimal(drift_bps) / 10000)).quantize(Decimal("0.00001"))
    v = e.decide(signal(symbol, side, price=sig_price), T0).verdict
    if not v.approved:
        assert v.reasons
        return
    f = MARKETS.get(symbol)
    assert v.quantity % f.step_size == 0 and v.price_limit % f.tick_size == 0
    assert v.quantity * v.price_limit >= f.min_notional and v.quantity >= f.min_qty
    assert MARKETS.check_order(symbol, side, v.quantity, v.price_limit).allowed
    assert v.quantity * v.price_limit <= e.cfg.max_notional_usdt
    if side == "SELL":
        assert v.quantity <= held
    else:
        assert v.quantity * v.price_limit <= max(Decimal(0), equity * fraction) + f.tick_size * v.quantity


# -- property: the trading-state machine -------------------------------------------------------------
ops = st.lists(
    st.sampled_from(
        ["kill", "release", "loop", "loss", "win", "drift", "calm", "wait", "wait_long", "stale", "signal"]
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_no_sequence_of_events_leaves_halted_without_a_release(ops):
    e = make_engine(
        order_loop_trip_per_10s=3,
        daily_loss_budget_usdt=Decimal("1"),
        max_drawdown_pct=1.0,
        max_exposure_per_symbol_usdt=Decimal("10000"),
        max_total_exposure_usdt=Decimal("10000"),
    )
    t = T0
    for op in ops:
        before = e.sm.state
        released = False
        t += timedelta(seconds=1)
        feed(e, t)
        if op == "kill":
            events = e.set_kill_switch(True, True, t)
        elif op == "release":
            events = e.set_kill_switch(False, True, t)
            more, _ = e.release(t)
            events += more
            released = True
        elif op == "loop":
            events = []
            for i in range(3):
                events += e.decide(signal(ts=t), t + timedelta(milliseconds=i)).events
        elif op == "loss":
            _, events = e.on_fill(fill("ETH/USDT", "BUY", "0.1", "3000", ts=t), t)
            more = e.on_fill(fill("ETH/USDT", "SELL", "0.1", "2800", ts=t), t)[1]
            events += more
        elif op == "win":
            _, events = e.on_fill(fill("ETH/USDT", "BUY", "0.1", "3000", ts=t), t)
            events += e.on_fill(fill("ETH/USDT", "SELL", "0.1", "3300", ts=t), t)[1]
        elif op == "drift":
            e.on_drift(None, True, "x")
            events = e.evaluate(t)
        elif op == "calm":
            e.on_drift(None, False, "")
            events = e.evaluate(t)
        elif op == "wait":
            t += timedelta(seconds=30)
            feed(e, t)
            events = e.evaluate(t)
        elif op == "wait_long":
            t += timedelta(days=8)
            feed(e, t)
            events = e.evaluate(t)
        elif op == "stale":
            t += timedelta(seconds=20)
            events = e.evaluate(t)
        else:
            events = e.decide(signal(ts=t), t).events
        changes = [ev for ev in events if isinstance(ev, TradingStateChanged)]
        if before == "HALTED" and not released:
            assert e.sm.state == "HALTED" and not changes
        for ev in changes:
            if ev.previous == "HALTED":
                assert released
        if e.kill_engaged:
            assert e.sm.state == "HALTED"
        if e.sm.state == "HALTED":
            assert not e.decide(signal(ts=t), t).verdict.approved


def test_a_signal_older_than_its_useful_life_is_refused(engine):
    late = T0 + timedelta(seconds=3)
    feed(engine, late)
    assert engine.decide(signal(ts=T0), late).verdict.reasons == ["stale_signal"]
    assert engine.decide(signal(ts=late - timedelta(seconds=1)), late).verdict.approved


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_a_restored_engine_holds_the_same_account_breakers_and_state(ops):
    e = make_engine(
        order_loop_trip_per_10s=3,
        daily_loss_budget_usdt=Decimal("1"),
        max_drawdown_pct=1.0,
        max_exposure_per_symbol_usdt=Decimal("10000"),
        max_total_exposure_usdt=Decimal("10000"),
    )
    t = T0
    for n, op in enumerate(ops):
        t += timedelta(seconds=1)
        feed(e, t)
        if op == "kill":
            e.set_kill_switch(True, True, t)
        elif op == "release":
            e.set_kill_switch(False, True, t)
            e.release(t)
        elif op in ("loss", "win"):
            e.on_fill(fill("ETH/USDT", "BUY", "0.1", "3000", ts=t), t)
            e.on_fill(fill("ETH/USDT", "SELL", "0.05", "2800" if op == "loss" else "3300", ts=t), t)
        elif op == "drift":
            e.on_drift(None, True, "x")
        elif op == "wait_long":
            t += timedelta(days=1, hours=n)
            feed(e, t)
        else:
            e.decide(signal(ts=t), t)
        e.evaluate(t)
    snap = e.snapshot(t)
    r = RiskEngine(e.cfg, MARKETS, list(PRICES), t)
    r.restore(type(snap).model_validate_json(snap.model_dump_json()))
    again = r.snapshot(t)
    skip = {"id", "ts", "market_volatility_ratio", "market_drift_detected"}
    assert again.model_dump(exclude=skip) == snap.model_dump(exclude=skip)
    assert r.sm.state == e.sm.state and set(r.board.active) == set(e.board.active)


def test_drawdown_halts_and_a_release_rebases_the_peak():
    e = make_engine(max_drawdown_pct=5.0)
    e.on_fill(fill("ETH/USDT", "BUY", "1", "3000", fee="0"), T0)
    crash = T0 + timedelta(seconds=1)
    feed(e, crash, {**PRICES, "ETH/USDT": Decimal("2400")})  # -600 on 10000: 6 %
    e.evaluate(crash)
    assert e.sm.state == "HALTED" and e.board.active["max_drawdown"].effect == "HALTED"
    assert e.snapshot(crash).drawdown_pct >= 5.0
    e.set_kill_switch(False, True, crash)
    events, refused = e.release(crash)
    assert not refused and e.book.peak_equity == e.book.equity()
    assert e.sm.state == "REDUCING"  # cooldown after the drawdown breaker cleared
    e2 = make_engine(max_drawdown_pct=5.0, drawdown_rebase_on_release=False)
    e2.on_fill(fill("ETH/USDT", "BUY", "1", "3000", fee="0"), T0)
    feed(e2, crash, {**PRICES, "ETH/USDT": Decimal("2400")})
    e2.evaluate(crash)
    _, refused = e2.release(crash)
    assert refused and e2.sm.state == "HALTED"  # without the re-base the breaker still holds


def test_silent_execution_reduces_after_the_grace_and_clears_on_a_heartbeat():
    e = make_engine()
    later = T0 + timedelta(seconds=11)
    for sym, px in PRICES.items():
        e.on_tick(sym, px, later, later)
    e.on_heartbeat("market_data", later)
    e.evaluate(later)
    assert "heartbeat_missing:execution" in e.board.active and e.sm.state == "REDUCING"
    assert "trading_reducing" in e.decide(signal(ts=later), later).verdict.reasons
    e.on_heartbeat("execution", later)
    e.evaluate(later)
    assert e.sm.state == "ACTIVE"  # no cooldown after a data/heartbeat breaker


def test_a_sell_uses_the_smaller_of_risk_and_execution_positions(engine):
    engine.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    engine.external_positions = {"ETH/USDT": Decimal("0.015")}
    assert engine.position_mismatches(engine.external_positions) == {
        "ETH/USDT": (Decimal("0.02"), Decimal("0.015"))
    }
    v = engine.decide(signal("ETH/USDT", "SELL"), T0).verdict
    assert v.approved and v.quantity == Decimal("0.015")
    assert engine.position_mismatches({"ETH/USDT": Decimal("0.02")}) == {}


def test_verdict_id_is_derived_from_the_signal_id_so_two_risk_processes_agree():
    from libs.common.contracts.risk import verdict_id_for

    s = signal()
    a, b = make_engine(), make_engine()  # two risk processes answering the same signal
    va, vb = a.decide(s, T0).verdict, b.decide(s, T0).verdict
    assert va.approved and vb.approved
    assert va.id == vb.id == verdict_id_for(s.id)
    assert verdict_id_for(signal().id) != va.id  # another signal, another id
    refused = a.decide(s, T0).verdict  # the duplicate's refusal shares the id: JetStream keeps the first
    assert refused.id == va.id and refused.reasons == ["duplicate_signal"]

"""Operator controls in risk's core: pause/resume new entries (a REDUCING breaker) and exit one symbol through
risk's own gates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from libs.common.contracts import BreakerCleared, BreakerTripped, TradingControlCommand, TradingStateChanged
from services.risk.control import PAUSE, apply_control, control_result
from tests.unit.risk.conftest import T0, fill, make_engine, signal


def cmd(action: str, symbol: str | None = None) -> TradingControlCommand:
    return TradingControlCommand(ts=T0, action=action, symbol=symbol, reason="test", actor="op")


def test_pause_refuses_new_entries_allows_exits_and_resume_restores_active(engine):
    engine.on_fill(fill("ETH/USDT", "BUY", "0.01", "3000"), T0)
    assert engine.decide(signal("BTC/USDT", "BUY"), T0).verdict.approved  # positive control: entries pass
    out = apply_control(engine, cmd("pause"), T0)
    assert out.accepted and engine.sm.state == "REDUCING"
    assert [type(e) for e in out.events] == [BreakerTripped, TradingStateChanged]
    refused = engine.decide(signal("XRP/USDT", "BUY"), T0).verdict
    assert not refused.approved and "trading_reducing" in refused.reasons
    assert engine.decide(
        signal("ETH/USDT", "SELL"), T0
    ).verdict.approved  # reducing exposure is still allowed
    assert apply_control(engine, cmd("pause"), T0).detail.startswith("already paused")
    engine.evaluate(T0 + timedelta(seconds=5))
    assert PAUSE in engine.board.active and engine.sm.state == "REDUCING"  # no breaker round lifts it

    back = apply_control(engine, cmd("resume"), T0 + timedelta(seconds=5))
    assert back.accepted and engine.sm.state == "ACTIVE" and back.detail == "entries resumed"
    assert [type(e) for e in back.events] == [BreakerCleared, TradingStateChanged]
    assert engine.decide(
        signal("XRP/USDT", "BUY", ts=T0 + timedelta(seconds=5)), T0 + timedelta(seconds=5)
    ).verdict.approved


def test_a_pause_survives_a_restart_of_risk(engine):
    apply_control(engine, cmd("pause"), T0)
    again = make_engine()
    again.restore(engine.snapshot(T0))
    assert again.sm.state == "REDUCING" and PAUSE in again.board.active


def test_resume_under_a_kill_switch_stays_halted(engine):
    apply_control(engine, cmd("pause"), T0)
    engine.set_kill_switch(True, True, T0)
    out = apply_control(engine, cmd("resume"), T0)
    assert out.accepted and engine.sm.state == "HALTED" and "stays HALTED" in out.detail


def test_exit_sells_the_position_through_the_gates_and_refuses_without_one(engine):
    none = apply_control(engine, cmd("exit", "ETH/USDT"), T0)
    assert not none.accepted and none.detail.startswith("no_position") and none.verdict is None
    engine.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    c = cmd("exit", "ETH/USDT")
    out = apply_control(engine, c, T0)
    assert out.accepted and out.verdict.side == "SELL" and out.verdict.quantity == Decimal("0.02")
    assert out.verdict.signal_id == c.id and out.remaining == 0
    res = control_result("risk", c, out, engine.sm.state, T0)
    assert res.verdict_id == out.verdict.id and res.quantity == Decimal("0.02")


def test_exit_is_refused_by_the_kill_switch_like_any_sell(engine):
    engine.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    engine.set_kill_switch(True, True, T0)
    out = apply_control(engine, cmd("exit", "ETH/USDT"), T0)
    assert not out.accepted and "kill_switch_engaged" in out.detail and not out.verdict.approved


def test_the_same_exit_command_twice_is_one_verdict(engine):
    engine.on_fill(fill("ETH/USDT", "BUY", "0.02", "3000"), T0)
    c = cmd("exit", "ETH/USDT")
    assert apply_control(engine, c, T0).accepted
    again = apply_control(engine, c, T0)
    assert not again.accepted and "duplicate_signal" in again.detail

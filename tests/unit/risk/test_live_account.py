"""Live mode: the exchange account (as execution reconciles it) is risk's book: sizing, exposure and drawdown
use it, never the configured paper equity."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from libs.common.contracts import AccountState
from tests.unit.risk.conftest import T0, feed, make_engine, signal

D = Decimal


def test_a_1000_usdt_account_sizes_and_draws_down_on_1000_not_the_configured_equity():
    e = make_engine(order_fraction_of_equity=D("0.02"))  # configured paper equity: 10,000
    e.sync_account({"USDT": D("1000")})
    assert e.book.equity() == D("1000") and e.book.peak_equity == D("1000")
    v = e.decide(signal(), T0).verdict
    assert v.approved and v.quantity * v.price_limit <= D("20.01")  # 2 % of 1,000 (not 200 of 10,000)
    # the account loses 15 % (at the exchange): the 10 % drawdown breaker trips on the real account
    later = T0 + timedelta(seconds=5)
    feed(e, later)
    e.sync_account({"USDT": D("850")})
    events = e.evaluate(later)
    assert e.book.drawdown_pct() == 15.0
    assert "max_drawdown" in e.board.active and e.sm.state == "HALTED", events


def test_exchange_holdings_are_positions_valued_at_the_last_price_and_count_against_exposure():
    e = make_engine(max_exposure_per_symbol_usdt=D("90"), order_fraction_of_equity=D("0.02"))
    e.sync_account({"USDT": D("900"), "BTC": D("0.0015"), "BNB": D("5")})  # BNB: no configured symbol
    assert e.book.positions == {"BTC/USDT": D("0.0015")}
    assert e.book.equity() == D("990")  # 900 + 0.0015 * 60,000
    assert e.book.avg_cost["BTC/USDT"] == D("60000")  # bought outside the bot: its cost is the price seen
    assert e.decide(signal(), T0).verdict.reasons == ["max_exposure_symbol"]  # 90 held: no room
    e.sync_account({"USDT": D("990")})  # sold at the exchange
    assert e.book.positions == {} and "BTC/USDT" not in e.book.avg_cost


def test_the_peak_survives_a_restart_once_it_is_the_exchanges():
    e = make_engine()
    e.sync_account({"USDT": D("1000")})
    snap = e.snapshot(T0)
    assert snap.account_source == "exchange"
    r = make_engine()
    r.restore(AccountState.model_validate(snap.model_dump()))
    r.sync_account({"USDT": D("880")})
    assert r.book.peak_equity == D("1000") and r.book.drawdown_pct() == 12.0

"""The live broker's small decisions: how an order goes to Binance, which trades still need booking, when a
fill happened, when a resting limit has outlived its time to live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.execution.adapter import ExchangeOrder, ExchangeTrade
from services.execution.live_core import fill_time, needs_trade_lookup, past_ttl, send_spec, unbooked

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def trade(tid: str, amount: str = "1") -> ExchangeTrade:
    return ExchangeTrade(tid, "o1", Decimal(amount), Decimal("100"), Decimal("0"), None, None, False)


def order(filled: str, *trades: ExchangeTrade) -> ExchangeOrder:
    return ExchangeOrder(
        "o1", "c1", "BTC/USDT", "BUY", "LIMIT", "closed", Decimal("2"), Decimal(filled), None, None, trades
    )


def test_a_market_order_with_a_limit_goes_as_limit_ioc_and_never_fills_beyond_it():
    spec = send_spec("MARKET", Decimal("101.5"), "c1")
    assert (spec.type, spec.price) == ("limit", 101.5)
    assert spec.params == {"timeInForce": "IOC", "newClientOrderId": "c1"}


def test_a_flatten_goes_at_market_and_a_limit_order_rests():
    flatten = send_spec("MARKET", None, "c2")
    assert (flatten.type, flatten.price, flatten.params) == ("market", None, {"newClientOrderId": "c2"})
    resting = send_spec("LIMIT", Decimal("99"), "c3")
    assert (resting.type, resting.price) == ("limit", 99.0)
    assert resting.params == {"timeInForce": "GTC", "newClientOrderId": "c3"}
    with pytest.raises(AssertionError):
        send_spec("LIMIT", None, "c4")


def test_trades_are_fetched_only_when_the_answer_lists_fewer_than_it_filled():
    assert needs_trade_lookup(order("2", trade("t1")))
    assert not needs_trade_lookup(order("2", trade("t1"), trade("t2")))
    assert not needs_trade_lookup(order("0"))


def test_only_trades_the_journal_lacks_are_booked_each_once_in_order():
    trades = [trade("t1"), trade("t2"), trade("t2"), trade("t3")]
    assert [t.id for t in unbooked(trades, {"t1"})] == ["t2", "t3"]
    assert unbooked(trades, {"t1", "t2", "t3"}) == []


def test_a_fill_keeps_the_exchange_time_and_takes_now_only_without_one():
    assert fill_time(1_767_225_600_500, NOW) == datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    assert fill_time(None, NOW) is NOW


def test_a_resting_limit_past_its_ttl_is_due_and_nothing_else_is():
    old = NOW - timedelta(seconds=301)
    assert past_ttl("ACCEPTED", old, NOW, 300.0) and past_ttl("PARTIALLY_FILLED", old, NOW, 300.0)
    assert not past_ttl("ACCEPTED", NOW - timedelta(seconds=299), NOW, 300.0)
    assert not past_ttl("FILLED", old, NOW, 300.0)  # done: nothing rests
    assert not past_ttl("ACCEPTED", old, NOW, 0.0)  # 0: GTC, never cancelled for age

"""Reservations live until the order is terminal: resting and unknown-outcome orders keep counting against
the caps, partial fills and cancellations release exactly what did not fill, and a verdict execution never
journaled is released once the journal says so."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from libs.common.contracts import Fill
from tests.unit.risk.conftest import PRICES, T0, feed, make_engine, signal

CAP = {
    "max_exposure_per_symbol_usdt": Decimal("100"),
    "order_fraction_of_equity": Decimal("0.006"),  # 60 USDT
    "max_orders_per_10s": 49,
    "max_orders_per_10s_per_symbol": 49,
    "order_loop_trip_per_10s": 1000,
}


def _fill(coid: str, qty: Decimal, price: Decimal, n: int, side: str = "BUY") -> Fill:
    return Fill(
        ts=T0,
        client_order_id=coid,
        trade_id=f"tr-{coid}-{n}",
        symbol="BTC/USDT",
        side=side,
        quantity=qty,
        price=price,
        fee=Decimal("0"),
        fee_asset="USDT",
    )


def _notional(verdicts) -> Decimal:
    return sum((v.quantity * v.price_limit for v in verdicts if v.approved), Decimal("0"))


def test_five_resting_60_usdt_buys_against_a_100_usdt_cap_never_hold_more_than_the_cap():
    e = make_engine(**CAP)
    verdicts = [e.decide(signal(), T0).verdict for _ in range(5)]
    for i, v in enumerate(verdicts):
        if v.approved:  # execution rests each one as a limit order
            e.on_order(v.id, f"c{i}", "ACCEPTED", Decimal("0"))
    approved = [v for v in verdicts if v.approved]
    assert approved[0].quantity * approved[0].price_limit <= Decimal(
        "60.5"
    )  # the first gets its full 60 USDT
    assert _notional(verdicts) <= Decimal("100"), "more than the per-symbol cap was approved"
    assert all(v.reasons == ["max_exposure_symbol"] for v in verdicts[2:])
    # a minute later (the old reservation timer was ~7 s) the limits still rest: still nothing more
    later = T0 + timedelta(seconds=60)
    feed(e, later)
    more = [e.decide(signal(ts=later), later).verdict for _ in range(5)]
    assert not any(v.approved for v in more), [v.reasons for v in more]
    assert {r for v in more for r in v.reasons} == {"max_exposure_symbol"}


def test_an_unknown_outcome_order_keeps_its_reservation():
    e = make_engine(**CAP)
    first = e.decide(signal(), T0).verdict
    e.on_order(first.id, "c1", "UNKNOWN", Decimal("0"))  # a timeout after the send: it may still fill
    later = T0 + timedelta(seconds=120)
    feed(e, later)
    assert e.reservations.unconfirmed(later) == []  # journaled: not a candidate for release
    held = first.quantity * first.price_limit
    v = e.decide(signal(ts=later), later).verdict
    assert _notional([v]) <= Decimal("100") - held


def test_a_partial_fill_then_cancel_releases_exactly_what_did_not_fill():
    e = make_engine(**CAP)
    v = e.decide(signal(), T0).verdict
    qty = v.quantity
    part = (qty / 2).quantize(Decimal("0.00001"))
    e.on_order(v.id, "c1", "ACCEPTED", Decimal("0"))
    e.on_fill(_fill("c1", part, PRICES["BTC/USDT"], 1), T0)
    e.on_order(v.id, "c1", "PARTIALLY_FILLED", part)
    assert e.reservations.pending("BTC/USDT", "BUY")[0] == qty - part  # the unfilled rest is still held
    e.on_order(v.id, "c1", "CANCELLED", part)  # the rest is cancelled: released, the fill stays in the book
    assert e.reservations.pending("BTC/USDT", "BUY") == (Decimal("0"), Decimal("0"), 0)
    assert v.id not in e.reservations
    assert e.book.positions["BTC/USDT"] == part


def test_a_terminal_order_holds_its_fills_until_they_reach_the_book():
    e = make_engine(**CAP)
    v = e.decide(signal(), T0).verdict
    e.on_order(v.id, "c1", "FILLED", v.quantity)  # the order event outran its fill
    assert e.reservations.pending("BTC/USDT", "BUY")[0] == v.quantity
    e.on_fill(_fill("c1", v.quantity, PRICES["BTC/USDT"], 1), T0)
    assert v.id not in e.reservations and e.book.positions["BTC/USDT"] == v.quantity


def test_a_fill_before_its_order_event_is_not_counted_twice():
    e = make_engine(**CAP)
    v = e.decide(signal(), T0).verdict
    e.on_fill(_fill("c1", v.quantity, PRICES["BTC/USDT"], 1), T0)  # fill first (another stream)
    e.on_order(v.id, "c1", "FILLED", v.quantity)
    assert v.id not in e.reservations


def test_replayed_and_reordered_order_events_never_reopen_an_order():
    e = make_engine(**CAP)
    v = e.decide(signal(), T0).verdict
    e.on_order(v.id, "c1", "ACCEPTED", Decimal("0"))
    e.on_order(v.id, "c1", "CANCELLED", Decimal("0"))
    assert v.id not in e.reservations
    e.on_order(v.id, "c1", "ACCEPTED", Decimal("0"))  # a late redelivery
    assert v.id not in e.reservations


def test_a_verdict_never_journaled_is_released_only_after_the_journal_says_so():
    e = make_engine(**CAP)
    v = e.decide(signal(), T0).verdict
    assert e.reservations.unconfirmed(v.expires_at) == []  # it may still be journaled until it expires
    due = T0 + timedelta(seconds=60)
    assert e.reservations.unconfirmed(due) == [v.id]
    assert e.reservations.pending("BTC/USDT", "BUY")[2] == 1  # kept until the journal answers
    e.reservations.never_journaled(v.id)
    assert e.reservations.pending("BTC/USDT", "BUY")[2] == 0


def test_pending_sells_are_held_against_the_position_until_terminal():
    e = make_engine(**CAP)
    e.on_fill(_fill("b1", Decimal("0.001"), PRICES["BTC/USDT"], 1), T0)
    sell = e.decide(signal(side="SELL"), T0).verdict
    assert sell.approved and sell.quantity == Decimal("0.001")
    e.on_order(sell.id, "s1", "ACCEPTED", Decimal("0"))
    later = T0 + timedelta(seconds=60)
    feed(e, later)
    assert e.decide(signal(side="SELL", ts=later), later).verdict.reasons == ["no_position"]
    e.on_order(sell.id, "s1", "REJECTED", Decimal("0"))
    assert e.decide(signal(side="SELL", ts=later), later).verdict.approved

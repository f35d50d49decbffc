"""The paper exchange: market fills with slippage, resting limits, partial fills, fees, balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.contracts import Tick
from services.execution.ledger import Balance, Ledger
from services.execution.paper import FeeSchedule, PaperExchange, PaperOrder, SlippageModel, fill_row
from services.execution.records import FillRow

NOW = datetime(2026, 1, 1, tzinfo=UTC)
D = Decimal


def tick(bid="100", ask="101", volume="10", symbol="BTC/USDT") -> Tick:
    return Tick(ts=NOW, symbol=symbol, bid=D(bid), ask=D(ask), last=D(bid), volume=D(volume))


def exchange(usdt="10000", btc="0", **kw) -> PaperExchange:
    ledger = Ledger(balances={"USDT": Balance(D(usdt)), "BTC": Balance(D(btc))})
    return PaperExchange(ledger, **kw)


def order(side="BUY", qty="1", limit=None, order_type="MARKET", coid="c1") -> PaperOrder:
    return PaperOrder(
        client_order_id=coid,
        symbol="BTC/USDT",
        side=side,
        order_type=order_type,
        quantity=D(qty),
        limit_price=D(limit) if limit else None,
        created_at=NOW,
    )


def test_market_buy_fills_at_ask_plus_slippage_with_taker_fee():
    ex = exchange(slippage=SlippageModel(bps=D("10"), bps_per_10k_usdt=D("0")))
    res = ex.submit(order(limit="200"), tick(), NOW)
    assert res.status == "FILLED"
    (t,) = res.trades
    assert t.price == D("101") * D("1.001")
    assert t.fee == (t.price * D("0.001")).quantize(D("0.00000001"))
    assert not t.is_maker
    assert ex.ledger.balance("BTC").free == D("1")
    assert ex.ledger.balance("USDT").free == D("10000") - t.price - t.fee


def test_slippage_grows_with_order_size():
    model = SlippageModel(bps=D("1"), bps_per_10k_usdt=D("5"))
    small = model.price("BUY", tick(), D("1"))
    large = model.price("BUY", tick(), D("1000"))
    assert D("101") < small < large
    assert model.price("SELL", tick(), D("1000")) < D("100")


def test_market_order_beyond_price_limit_is_rejected():
    ex = exchange()
    res = ex.submit(order(limit="100"), tick(), NOW)
    assert res.status == "REJECTED" and res.reason == "price_beyond_limit"
    assert ex.ledger.balance("USDT").free == D("10000")


def test_market_order_without_a_price_is_rejected():
    assert exchange().submit(order(limit="200"), None, NOW).reason == "no_market_price"


def test_sell_beyond_held_quantity_is_rejected_and_balances_stay_non_negative():
    ex = exchange(btc="0.5")
    res = ex.submit(order(side="SELL", limit="1"), tick(), NOW)
    assert res.status == "REJECTED" and res.reason.startswith("insufficient_balance")
    assert ex.ledger.balance("BTC").free == D("0.5")


def test_buy_beyond_quote_balance_is_rejected():
    res = exchange(usdt="50").submit(order(limit="200"), tick(), NOW)
    assert res.status == "REJECTED" and res.reason.startswith("insufficient_balance")


def test_bnb_discount_cuts_the_fee_by_a_quarter():
    assert FeeSchedule(bnb_discount=True).rate(False) == D("0.00075")
    assert FeeSchedule(maker=D("0.0008")).rate(True) == D("0.0008")


def test_limit_buy_rests_locks_funds_then_fills_partially_by_tick_volume_at_maker_fee():
    ex = exchange(fees=FeeSchedule(taker=D("0.001"), maker=D("0.0005")))
    res = ex.submit(order(qty="3", limit="99", order_type="LIMIT"), tick(), NOW)
    assert res.status == "ACCEPTED"
    usdt = ex.ledger.balance("USDT")
    assert usdt.locked == D("3") * D("99") * D("1.0005")
    assert ex.on_tick(tick(bid="99.5", ask="100", volume="5"), NOW) == []  # not crossed
    part = ex.on_tick(tick(bid="98", ask="99", volume="2"), NOW)
    assert [r.status for r in part] == ["PARTIALLY_FILLED"]
    (t,) = part[0].trades
    assert t.quantity == D("2") and t.price == D("99") and t.is_maker and t.fee == D("0.099")
    done = ex.on_tick(tick(bid="97", ask="98", volume="5"), NOW)
    assert [r.status for r in done] == ["FILLED"] and done[0].trades[0].quantity == D("1")
    assert done[0].order.filled == D("3") and not ex.book
    assert usdt.locked == 0
    assert usdt.free == D("10000") - D("297") - D("0.1485")
    assert ex.ledger.balance("BTC").free == D("3")


def test_marketable_limit_fills_as_taker_never_beyond_its_limit():
    ex = exchange(slippage=SlippageModel(bps=D("100"), bps_per_10k_usdt=D("0")))
    res = ex.submit(order(limit="101.5", order_type="LIMIT"), tick(), NOW)
    assert res.status == "FILLED" and res.trades[0].price == D("101.5") and not res.trades[0].is_maker


def test_limit_sell_locks_base_and_cancel_releases_it():
    ex = exchange(btc="2")
    res = ex.submit(order(side="SELL", qty="2", limit="105", order_type="LIMIT"), tick(), NOW)
    assert res.status == "ACCEPTED" and ex.ledger.balance("BTC").locked == D("2")
    assert (
        ex.submit(order(side="SELL", qty="1", limit="105", order_type="LIMIT", coid="c2"), tick(), NOW).status
        == "REJECTED"
    )
    cancelled = ex.cancel_all()
    assert [r.status for r in cancelled] == ["CANCELLED"] and not ex.book
    assert ex.ledger.balance("BTC").free == D("2") and ex.ledger.balance("BTC").locked == 0


def test_resting_limit_expires_after_its_ttl():
    ex = exchange()
    o = order(qty="1", limit="90", order_type="LIMIT")
    o.expires_at = NOW + timedelta(seconds=60)
    ex.submit(o, tick(), NOW)
    assert ex.expire(NOW + timedelta(seconds=59)) == []
    assert [r.reason for r in ex.expire(NOW + timedelta(seconds=60))] == ["expired"]
    assert ex.ledger.balance("USDT").free == D("10000")


def test_zero_volume_tick_fills_nothing():
    ex = exchange()
    ex.submit(order(qty="1", limit="99", order_type="LIMIT"), tick(), NOW)
    assert ex.on_tick(tick(bid="97", ask="98", volume="0"), NOW) == []


def test_trade_ids_are_unique_per_order():
    ex = exchange()
    ex.submit(order(qty="3", limit="99", order_type="LIMIT"), tick(), NOW)
    ids = [r.trades[0].trade_id for r in ex.on_tick(tick(bid="97", ask="98", volume="1"), NOW)]
    ids += [r.trades[0].trade_id for r in ex.on_tick(tick(bid="97", ask="98", volume="1"), NOW)]
    assert ids == ["c1-1", "c1-2"]


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("order"),
            st.sampled_from(["BUY", "SELL"]),
            st.sampled_from(["MARKET", "LIMIT"]),
            st.decimals(min_value=D("0.1"), max_value=D("30"), places=1),
            st.decimals(min_value=D("90"), max_value=D("110"), places=0),
        ),
        st.tuples(
            st.just("tick"),
            st.decimals(min_value=D("90"), max_value=D("110"), places=0),
            st.decimals(min_value=D("0"), max_value=D("5"), places=1),
        ),
        st.tuples(st.just("cancel_all")),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_balances_never_go_negative_and_locks_match_resting_orders(seq):
    ex = exchange(usdt="1000", btc="5")
    start_btc = D("5")
    last = tick()
    net = D(0)
    for n, op in enumerate(seq):
        results = []
        if op[0] == "order":
            _, side, otype, qty, limit = op
            results = [
                ex.submit(
                    order(side=side, qty=str(qty), limit=str(limit), order_type=otype, coid=f"c{n}"),
                    last,
                    NOW,
                )
            ]
        elif op[0] == "tick":
            last = tick(bid=str(op[1]), ask=str(op[1] + 1), volume=str(op[2]))
            results = ex.on_tick(last, NOW)
        else:
            ex.cancel_all()
        for r in results:
            for t in r.trades:
                net += t.quantity if t.side == "BUY" else -t.quantity
        for b in ex.ledger.balances.values():
            assert b.free >= 0 and b.locked >= 0
        locked_usdt = sum((o.locked for o in ex.book.values() if o.side == "BUY"), D(0))
        locked_btc = sum((o.locked for o in ex.book.values() if o.side == "SELL"), D(0))
        assert ex.ledger.balance("USDT").locked == locked_usdt
        assert ex.ledger.balance("BTC").locked == locked_btc
        # base is conserved: what we hold is what we started with plus net fills
        assert ex.ledger.balance("BTC").total == start_btc + net


def test_a_paper_trade_maps_to_the_journal_row_field_by_field():
    """`fill_row`, the one mapping the paper broker journals and the backtest records: every field from the trade
    (a sell with a realized P&L, fee in USDT), booked at the time given, not the order's."""
    ex = exchange(usdt="10000", btc="0")
    ex.submit(order("BUY", "1", coid="b1"), tick("100", "101"), NOW)
    sold = ex.submit(order("SELL", "1", coid="s1"), tick("120", "121"), NOW)
    (t,) = sold.trades
    booked = NOW + timedelta(seconds=7)
    row = fill_row(t, booked)
    assert t.accounting.realized_pnl_usdt > 0 and t.fee > 0 and t.fee_asset == "USDT"
    assert row == FillRow(
        exchange="paper",
        trade_id=t.trade_id,
        client_order_id="s1",
        symbol="BTC/USDT",
        side="SELL",
        quantity=t.quantity,
        price=t.price,
        fee=t.fee,
        fee_asset="USDT",
        ts=booked,
        is_maker=False,
        realized_pnl_usdt=t.accounting.realized_pnl_usdt,
        fee_usdt=t.accounting.fee_quote,
    )

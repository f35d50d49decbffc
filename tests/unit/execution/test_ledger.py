"""Average-cost accounting: realized P&L net of fees, with property tests on its invariants."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.execution.ledger import Balance, Ledger

D = Decimal
TOL = D("0.000001")


def test_round_trip_realizes_proceeds_minus_cost_minus_both_fees():
    led = Ledger(balances={"USDT": Balance(D("1000"))})
    buy = led.apply_fill("BTC/USDT", "BUY", D("1"), D("100"), D("0.1"), "USDT")
    assert buy.realized_pnl_usdt == 0 and buy.average_cost == D("100.1")
    sell = led.apply_fill("BTC/USDT", "SELL", D("1"), D("110"), D("0.11"), "USDT")
    assert sell.realized_pnl_usdt == D("110") - D("100") - D("0.1") - D("0.11")
    assert led.balance("USDT").free == D("1000") + sell.realized_pnl_usdt
    assert led.position("BTC/USDT").quantity == 0


def test_average_cost_blends_buys_and_partial_sell_keeps_it():
    led = Ledger(balances={"USDT": Balance(D("10000"))})
    led.apply_fill("ETH/USDT", "BUY", D("1"), D("100"), D("0"), "USDT")
    led.apply_fill("ETH/USDT", "BUY", D("1"), D("200"), D("0"), "USDT")
    assert led.position("ETH/USDT").average_cost == D("150")
    res = led.apply_fill("ETH/USDT", "SELL", D("0.5"), D("160"), D("0"), "USDT")
    assert res.realized_pnl_usdt == D("5") and res.average_cost == D("150")


def test_fee_in_base_asset_reduces_quantity_received():
    led = Ledger(balances={"USDT": Balance(D("1000"))})
    res = led.apply_fill("BTC/USDT", "BUY", D("1"), D("100"), D("0.001"), "BTC")
    assert res.position_quantity == D("0.999") and led.balance("BTC").free == D("0.999")
    assert res.average_cost * res.position_quantity == D("100")


def test_fee_in_bnb_is_debited_from_bnb_and_counted_in_pnl():
    led = Ledger(balances={"USDT": Balance(D("1000")), "BNB": Balance(D("1"))})
    led.apply_fill("BTC/USDT", "BUY", D("1"), D("100"), D("0"), "USDT")
    res = led.apply_fill("BTC/USDT", "SELL", D("1"), D("100"), D("0.01"), "BNB", fee_quote_value=D("3"))
    assert res.realized_pnl_usdt == D("-3") and led.balance("BNB").free == D("0.99")


fills = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.decimals(min_value=D("0.001"), max_value=D("5"), places=3),
        st.decimals(min_value=D("1"), max_value=D("1000"), places=2),
        st.decimals(min_value=D("0"), max_value=D("0.002"), places=4),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fills)
def test_cash_plus_cost_basis_equals_start_plus_realized(seq):
    """Invariant: quote cash + cost basis held = starting cash + realized P&L (fees in quote, sells <= held)."""
    start = D("1000000")
    led = Ledger(balances={"USDT": Balance(start)})
    realized = D(0)
    for side, qty, price, rate in seq:
        pos = led.position("BTC/USDT")
        if side == "SELL":
            qty = min(qty, pos.quantity)
            if qty <= 0:
                continue
        fee = (qty * price * rate).quantize(D("0.00000001"))
        realized += led.apply_fill("BTC/USDT", side, qty, price, fee, "USDT").realized_pnl_usdt
        assert led.balance("BTC").free >= 0 and led.balance("BTC").free == led.position("BTC/USDT").quantity
    pos = led.position("BTC/USDT")
    assert abs(led.balance("USDT").free + pos.cost - (start + realized)) < TOL
    assert pos.realized_pnl_usdt == realized


@settings(max_examples=200, deadline=None)
@given(fills)
def test_closing_flat_realizes_all_sells_minus_all_buys_minus_all_fees(seq):
    led = Ledger(balances={"USDT": Balance(D("1000000"))})
    buys = sells = fees = D(0)
    for side, qty, price, rate in seq:
        if side == "SELL":
            qty = min(qty, led.position("BTC/USDT").quantity)
            if qty <= 0:
                continue
        fee = (qty * price * rate).quantize(D("0.00000001"))
        led.apply_fill("BTC/USDT", side, qty, price, fee, "USDT")
        buys += qty * price if side == "BUY" else 0
        sells += qty * price if side == "SELL" else 0
        fees += fee
    left = led.position("BTC/USDT").quantity
    if left > 0:
        led.apply_fill("BTC/USDT", "SELL", left, D("500"), D(0), "USDT")
        sells += left * D("500")
    assert abs(led.position("BTC/USDT").realized_pnl_usdt - (sells - buys - fees)) < TOL
    assert led.position("BTC/USDT").quantity == 0 and led.position("BTC/USDT").cost == 0

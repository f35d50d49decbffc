"""Exchange filters from the ccxt markets snapshot: rounding never off-step, never above what was asked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.markets import DEFAULT_MARKETS_PATH, Markets, UnknownMarketError, load_markets

MARKETS = load_markets()
SYMBOLS = MARKETS.symbols

prices = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("200000"), places=8, allow_nan=False)
notionals = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=8, allow_nan=False)
quantities = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=8, allow_nan=False)


def test_snapshot_holds_only_spot_markets_with_binance_filters():
    assert DEFAULT_MARKETS_PATH.exists()
    assert {"BTC/USDT", "ETH/USDT"} <= set(SYMBOLS)
    assert all(":" not in s for s in SYMBOLS)
    btc = MARKETS.get("BTC/USDT")
    assert btc.tick_size == Decimal("0.01") and btc.step_size == Decimal("0.00001")
    assert btc.min_qty == Decimal("0.00001") and btc.min_notional == Decimal("5")
    assert btc.max_num_orders == 200 and btc.bid_multiplier_up == Decimal("5")


def test_unknown_symbol_is_refused_not_guessed():
    with pytest.raises(UnknownMarketError):
        MARKETS.get("SOL/USDT")
    check = MARKETS.check_order("SOL/USDT", "BUY", Decimal("1"), Decimal("150"))
    assert not check.allowed and check.reasons == ("unknown_market",)


def test_futures_are_skipped_unless_asked():
    import json

    raw = json.loads(DEFAULT_MARKETS_PATH.read_text())
    raw["BTC/USDT:USDT"] = {**raw["BTC/USDT"], "symbol": "BTC/USDT:USDT", "spot": False, "type": "swap"}
    assert "BTC/USDT:USDT" not in Markets.from_ccxt(raw)
    assert "BTC/USDT:USDT" in Markets.from_ccxt(raw, spot_only=False)


def test_check_order_names_every_broken_filter():
    check = MARKETS.check_order("BTC/USDT", "BUY", Decimal("0.0010015"), Decimal("60000.005"))
    assert not check.allowed
    assert set(check.reasons) == {"quantity_off_step", "price_off_tick"}
    small = MARKETS.check_order("BTC/USDT", "BUY", Decimal("0.00001"), Decimal("60000"))
    assert small.reasons == ("notional_below_min",)
    ok = MARKETS.check_order("BTC/USDT", "SELL", Decimal("0.001"), Decimal("60000.01"))
    assert ok.allowed and ok.notional == Decimal("60.00001")


def test_max_num_orders_and_percent_price_by_side():
    assert MARKETS.check_order(
        "BTC/USDT", "BUY", Decimal("0.001"), Decimal("60000"), open_orders=200
    ).reasons == ("max_num_orders",)
    fat = MARKETS.check_order(
        "BTC/USDT", "BUY", Decimal("0.001"), Decimal("60000"), reference_price=Decimal("10000")
    )
    assert fat.reasons == ("percent_price",)


def test_market_orders_use_market_lot_size():
    check = MARKETS.check_order("BTC/USDT", "BUY", Decimal("200"), Decimal("60000"), order_type="MARKET")
    assert "quantity_above_market_max" in check.reasons


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), qty=quantities)
def test_round_quantity_is_on_step_and_never_increases(symbol, qty):
    f = MARKETS.get(symbol)
    q = MARKETS.round_quantity(symbol, qty)
    assert Decimal(0) <= q <= qty
    assert q % f.step_size == 0
    assert qty - q < f.step_size  # the largest on-step quantity below


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), price=prices)
def test_round_price_never_worsens_the_limit(symbol, price):
    f = MARKETS.get(symbol)
    buy, sell = MARKETS.round_price(symbol, price, "BUY"), MARKETS.round_price(symbol, price, "SELL")
    assert buy <= price <= sell
    assert buy % f.tick_size == 0 and sell % f.tick_size == 0
    assert sell - buy <= f.tick_size


@settings(max_examples=300, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), notional=notionals, price=prices)
def test_sized_quantity_never_exceeds_notional_and_approved_is_above_min_notional(symbol, notional, price):
    f = MARKETS.get(symbol)
    limit = MARKETS.round_price(symbol, price, "BUY")
    if limit <= 0:
        return
    q = MARKETS.quantity_for_notional(symbol, notional, limit)
    assert q * limit <= notional
    check = MARKETS.check_order(symbol, "BUY", q, limit)
    if check.allowed:
        assert q * limit >= f.min_notional and q >= f.min_qty and q % f.step_size == 0
    elif q > 0 and f.min_price <= limit <= f.max_price and q <= f.max_qty:
        assert set(check.reasons) <= {"notional_below_min", "quantity_below_min"}


@settings(max_examples=200, deadline=None)
@given(symbol=st.sampled_from(SYMBOLS), price=prices)
def test_min_quantity_for_passes_the_filters(symbol, price):
    limit = MARKETS.round_price(symbol, price)
    f = MARKETS.get(symbol)
    if not (f.min_price <= limit <= f.max_price):
        return
    q = MARKETS.min_quantity_for(symbol, limit)
    if q <= f.max_qty:
        assert MARKETS.check_order(symbol, "BUY", q, limit).allowed
        smaller = q - f.step_size
        assert smaller <= 0 or not MARKETS.check_order(symbol, "BUY", smaller, limit).allowed

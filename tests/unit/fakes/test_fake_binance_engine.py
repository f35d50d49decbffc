"""The fake Binance engine on its own (no server): signatures, filters, matching, balance invariants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.binance.engine import BinanceError, Engine
from tests.fakes.binance.markets import load_specs, vendored_data_dir
from tests.fakes.binance.server import expected_signature, signed_payload

D = Decimal
SPECS = load_specs()

# Binance's own documented examples (SIGNED endpoint examples for POST /api/v3/order, HMAC key below)
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def engine(**balances) -> Engine:
    e = Engine(specs=SPECS, balances=balances or {"USDT": "10000", "BTC": "1"})
    e.set_book("BTCUSDT", "20000.00", "20000.02", "0.5", "0.5")
    return e


def order(e: Engine, **p) -> object:
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    params.update({k: str(v) for k, v in p.items()})
    return e.place_order(params)


def test_signature_matches_binance_documented_examples():
    q = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    assert (
        expected_signature(DOC_SECRET, q)
        == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )
    assert expected_signature(DOC_SECRET, "", q) == expected_signature(DOC_SECRET, q)
    mixed = expected_signature(
        DOC_SECRET,
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
    )
    assert mixed == "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    assert signed_payload("a=1&signature=abc", "") == "a=1"


def test_specs_hold_the_real_markets_and_the_synthetic_universe():
    assert vendored_data_dir().joinpath("binance_markets_ccxt.json").exists()
    assert SPECS["BTCUSDT"].tick == D("0.01") and SPECS["BTCUSDT"].step == D("0.00001")
    assert SPECS["LUNAUSDT"].status == "BREAK"
    assert {"BTCUPUSDT", "USDCUSDT", "ETHBTC", "XRPETH"} <= set(SPECS)
    for s in SPECS.values():  # every starting price sits on its tick
        assert s.round_price(s.price) == s.price, s.symbol


@pytest.mark.parametrize(
    ("params", "filter_name"),
    [
        ({"price": "20000.001", "quantity": "0.001"}, "PRICE_FILTER"),
        ({"price": "20000.00", "quantity": "0.000015"}, "LOT_SIZE"),
        ({"price": "20000.00", "quantity": "0.00001"}, "NOTIONAL"),
        ({"price": "20000.00", "quantity": "9000.1"}, "LOT_SIZE"),
        ({"type": "MARKET", "quantity": "129"}, "MARKET_LOT_SIZE"),
        ({"type": "MARKET", "quantity": "0.0001"}, "NOTIONAL"),
    ],
)
def test_filter_failures_name_the_filter(params, filter_name):
    e = engine(USDT="10000000", BTC="1000")
    p = dict(params)
    if p.get("type") == "MARKET":
        p.pop("type")
        with pytest.raises(BinanceError) as err:
            e.place_order({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", **p})
    else:
        with pytest.raises(BinanceError) as err:
            order(e, **p)
    assert (err.value.code, err.value.msg) == (-1013, f"Filter failure: {filter_name}")
    assert e.orders == [] and len(e.orders_received) == 1


def test_max_num_orders_filter_counts_open_orders():
    e = engine(USDT="1000000")
    for _ in range(200):
        order(e, price="19000.00", quantity="0.001")
    with pytest.raises(BinanceError, match="MAX_NUM_ORDERS"):
        order(e, price="19000.00", quantity="0.001")


def test_time_in_force_ioc_fok_and_limit_maker():
    e = engine(USDT="100000")
    ioc = order(e, price="20000.02", quantity="0.8", timeInForce="IOC")
    assert (ioc.status, ioc.executed_qty) == ("EXPIRED", D("0.5"))
    fok = order(e, price="20000.02", quantity="0.8", timeInForce="FOK")
    assert (fok.status, fok.executed_qty) == ("EXPIRED", D(0))
    with pytest.raises(BinanceError, match="immediately match"):
        e.place_order(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT_MAKER",
                "price": "20000.02",
                "quantity": "0.01",
            }
        )
    mk = e.place_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "price": "19999.00", "quantity": "0.01"}
    )
    assert mk.status == "NEW"
    assert e.balance("USDT")[1] == D("199.99")


def test_market_buy_by_quote_order_qty():
    e = engine()
    o = e.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100"})
    assert o.status == "FILLED" and o.executed_qty == D("0.00499")
    assert o.cum_quote <= D("100")


def test_missing_and_invalid_parameters():
    e = engine()
    with pytest.raises(BinanceError) as err:
        e.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1"})
    assert err.value.code == -1102 and "timeInForce" in err.value.msg
    with pytest.raises(BinanceError) as err:
        e.place_order({"symbol": "NOPE", "side": "BUY", "type": "MARKET", "quantity": "1"})
    assert (err.value.code, err.value.msg) == (-1121, "Invalid symbol.")
    with pytest.raises(BinanceError) as err:
        e.place_order({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS", "quantity": "1"})
    assert err.value.code == -1116


def test_events_are_emitted_for_book_and_trades():
    e = engine()
    seen = []
    e.listener = lambda kind, symbol, payload: seen.append((kind, symbol))
    e.set_book("ETHUSDT", "1600.00", "1600.01")
    order(e, type="MARKET", quantity="0.01", timeInForce="")
    assert ("book", "ETHUSDT") in seen and ("trade", "BTCUSDT") in seen


ops = st.lists(
    st.one_of(
        st.tuples(st.just("market"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 80)),
        st.tuples(
            st.just("limit"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 80), st.integers(-30, 30)
        ),
        st.tuples(st.just("book"), st.integers(-40, 40), st.integers(1, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_balances_never_go_negative_and_locks_match_open_orders(seq):
    e = engine(USDT="5000", BTC="0.2")
    start = {a: sum(v) for a, v in e.balances.items()}
    mid = D("20000.00")
    for op in seq:
        try:
            if op[0] == "market":
                e.place_order(
                    {"symbol": "BTCUSDT", "side": op[1], "type": "MARKET", "quantity": str(D(op[2]) / 1000)}
                )
            elif op[0] == "limit":
                order(e, side=op[1], quantity=str(D(op[2]) / 1000), price=str(mid + op[3]))
            elif op[0] == "book":
                mid = D("20000.00") + op[1]
                e.set_book("BTCUSDT", mid - D("0.01"), mid + D("0.01"), D(op[2]) / 100, D(op[2]) / 100)
            elif op[0] == "cancel" and e.orders:
                o = e.orders[op[1] % len(e.orders)]
                e.cancel_order("BTCUSDT", o.order_id, None)
        except BinanceError as err:
            assert err.code in (-2010, -2011, -1013), err
        for asset, (free, locked) in e.balances.items():
            assert free >= 0 and locked >= 0, (asset, free, locked)
            held = sum((o.locked for o in e.orders if o.is_open and o.lock_asset == asset), D(0))
            assert locked == held, (asset, locked, held)
        for o in e.orders:
            assert D(0) <= o.executed_qty <= o.orig_qty
            assert o.is_open or o.locked == 0
    # conservation: what left one asset arrived in the other, minus 0.1 % fees
    spent_usdt = start["USDT"] - sum(e.balances["USDT"])
    got_btc = sum(e.balances["BTC"]) - start["BTC"]
    bought = sum((D(t["qty"]) if t["isBuyer"] else -D(t["qty"])) for t in e.my_trades)
    paid = sum((D(t["quoteQty"]) if t["isBuyer"] else -D(t["quoteQty"])) for t in e.my_trades)
    fees_btc = sum((D(t["commission"]) for t in e.my_trades if t["commissionAsset"] == "BTC"), D(0))
    fees_usdt = sum((D(t["commission"]) for t in e.my_trades if t["commissionAsset"] == "USDT"), D(0))
    assert got_btc == bought - fees_btc
    assert spent_usdt == paid + fees_usdt


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"newClientOrderId": "bad id"}, -1100),
        ({"newClientOrderId": "a" * 37}, -1100),
        ({"quantity": "1e-3"}, -1100),
        ({"quantity": "-1"}, -1100),
        ({"price": "abc"}, -1100),
    ],
)
def test_malformed_order_parameters_are_refused_with_1100(params, code):
    e = engine()
    with pytest.raises(BinanceError) as err:
        order(e, **{"price": "20000.00", "quantity": "0.001", **params})
    assert err.value.code == code
    assert e.orders == []


def test_percent_price_by_side_bounds_limit_prices_around_the_mid():
    e = engine(USDT="1000000", BTC="10")
    order(e, price="99000.00", quantity="0.001")  # buy up to 5x the mid
    with pytest.raises(BinanceError, match="PERCENT_PRICE_BY_SIDE"):
        order(e, price="100020.00", quantity="0.001")
    with pytest.raises(BinanceError, match="PERCENT_PRICE_BY_SIDE"):
        order(e, side="SELL", price="3000.00", quantity="0.01")  # sell below 0.2x the mid

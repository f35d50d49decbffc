"""The fake Binance server's signed endpoints and order faults, driven by the real ccxt.async_support.binance."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from tests.fakes.binance import FakeBinance, make_exchange

D = Decimal


@pytest.fixture
async def fake():
    async with FakeBinance(balances={"USDT": "10000", "BTC": "0.5"}) as f:
        f.set_book("BTCUSDT", "20000.00", "20000.02", bid_qty="0.3", ask_qty="0.3")
        yield f
        assert f.internal_errors == []


@pytest.fixture
async def ex(fake):
    e = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    await e.load_markets()
    yield e
    await e.close()


def free(fake, asset: str) -> Decimal:
    return fake.balance(asset)[0]


async def test_load_markets_with_keys_also_loads_currencies_from_sapi(fake, ex):
    assert "BTC" in ex.currencies and "USDT" in ex.currencies
    assert fake.requests_to("/sapi/v1/capital/config/getall")[0].status == 200


async def test_market_buy_fills_at_the_ask_and_moves_balances_with_the_fee(fake, ex):
    o = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "v-1"})
    assert (o["status"], o["clientOrderId"], o["filled"], o["average"]) == ("closed", "v-1", 0.01, 20000.02)
    assert free(fake, "USDT") == D("10000") - D("200.0002")
    assert free(fake, "BTC") == D("0.5") + D("0.01") - D("0.00001")
    assert [x.client_order_id for x in fake.orders] == ["v-1"]
    trades = await ex.fetch_my_trades("BTC/USDT")
    assert [(t["order"], t["amount"], t["takerOrMaker"]) for t in trades] == [(o["id"], 0.01, "taker")]


async def test_large_market_order_walks_the_book_levels(fake, ex):
    o = await ex.create_order("BTC/USDT", "market", "sell", 0.5)
    assert o["filled"] == 0.5 and len(o["trades"]) >= 2
    assert o["average"] < 20000.00
    assert fake.balance("BTC") == (D(0), D(0))


async def test_limit_order_rests_then_fills_partially_and_fully_when_the_book_crosses(fake, ex):
    o = await ex.create_order("BTC/USDT", "limit", "buy", 0.2, 19990.00, params={"clientOrderId": "v-2"})
    assert o["status"] == "open"
    assert fake.balance("USDT") == (D("10000") - D("3998"), D("3998"))
    open_ = await ex.fetch_open_orders("BTC/USDT")
    assert [x["clientOrderId"] for x in open_] == ["v-2"]
    fake.set_book("BTCUSDT", "19989.00", "19989.50", bid_qty="1", ask_qty="0.05")
    got = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "v-2"})
    assert (got["status"], got["filled"], got["remaining"], got["info"]["status"]) == (
        "open",
        0.05,
        0.15,
        "PARTIALLY_FILLED",
    )
    fake.set_book("BTCUSDT", "19980.00", "19985.00", bid_qty="1", ask_qty="1")
    got = await ex.fetch_order(o["id"], "BTC/USDT")
    assert (got["status"], got["filled"], got["average"]) == ("closed", 0.2, 19990.0)
    assert fake.balance("USDT") == (D("10000") - D("3998"), D(0))
    assert all(t["takerOrMaker"] == "maker" for t in await ex.fetch_my_trades("BTC/USDT"))


async def test_cancel_releases_the_locked_funds_and_unknown_orders_are_not_found(fake, ex):
    o = await ex.create_order("BTC/USDT", "limit", "sell", 0.1, 21000.00, params={"clientOrderId": "v-3"})
    assert fake.balance("BTC") == (D("0.4"), D("0.1"))
    c = await ex.cancel_order(o["id"], "BTC/USDT")
    assert c["status"] == "canceled"
    assert fake.balance("BTC") == (D("0.5"), D(0))
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(o["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "never-sent"})
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00)
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19001.00)
    await ex.cancel_all_orders("BTC/USDT")
    assert await ex.fetch_open_orders("BTC/USDT") == []
    assert fake.balance("USDT") == (D("10000"), D(0))


async def test_duplicate_client_id_of_an_open_order_is_refused_but_reuse_after_fill_is_accepted(fake, ex):
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "dup"})
    assert len(fake.orders_for("dup")) == 1
    fake.set_book("BTCUSDT", "18990.00", "18999.00", bid_qty="1", ask_qty="1")  # fills it
    o = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "dup"})
    assert o["status"] == "closed"
    assert [x.status for x in fake.orders_for("dup")] == ["FILLED", "FILLED"]
    got = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "dup"})
    assert got["id"] == o["id"]  # the latest order with that id


async def test_insufficient_balance_and_filter_failures_place_nothing(fake, ex):
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 0.6)  # ~12000 USDT > 10000
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "limit", "sell", 0.6, 21000.00)
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.0002, 20000.00)  # 4 USDT < 5
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 2000000.00)
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        await ex.create_order("BTC/USDT", "limit", "sell", 9001, 20000.00)
    with pytest.raises(ccxt.MarketClosed):
        await ex.create_order("LUNA/USDT", "market", "buy", 100)
    assert fake.orders == [] and len(fake.orders_received) == 6
    assert fake.balance("USDT") == (D("10000"), D(0)) and fake.balance("BTC") == (D("0.5"), D(0))


async def test_balances_never_go_negative_over_many_orders(fake, ex):
    for _ in range(12):
        try:
            await ex.create_order("BTC/USDT", "market", "buy", 0.05)
        except ccxt.InsufficientFunds:
            break
    else:
        pytest.fail("10000 USDT bought 0.6 BTC at 20000")
    b = await ex.fetch_balance()
    assert b["free"]["USDT"] >= 0 and b["used"]["USDT"] == 0
    assert all(v >= 0 for asset in fake.engine.balances.values() for v in asset)


async def test_bad_signature_unknown_key_and_clock_skew_are_refused(fake):
    bad = make_exchange(fake, api_key=fake.api_key, secret="not-the-secret")
    stranger = make_exchange(fake, api_key="someone-else", secret=fake.secret)
    good = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    try:
        for e in (bad, stranger, good):
            e.options["fetchCurrencies"] = False  # both sapi calls of load_markets are signed
            e.options["fetchMargins"] = False
            await e.load_markets()
        with pytest.raises(ccxt.AuthenticationError):
            await bad.fetch_balance()
        with pytest.raises(ccxt.AuthenticationError):
            await stranger.fetch_balance()
        fake.clock.offset_ms = 20_000  # server ahead: the request is older than recvWindow
        with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
            await good.fetch_balance()
        fake.clock.offset_ms = -3_000  # server behind: the request is from the future
        with pytest.raises(ccxt.InvalidNonce, match="ahead of the server"):
            await good.create_order("BTC/USDT", "market", "buy", 0.01)
        fake.clock.offset_ms = 0
        assert (await good.fetch_balance())["free"]["USDT"] == 10000
        assert fake.orders == []
    finally:
        for e in (bad, stranger, good):
            await e.close()


async def test_accept_then_timeout_places_exactly_one_order_that_a_query_finds(fake):
    ex = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    try:
        await ex.load_markets()
        fake.faults.next("POST /api/v3/order", "accept_timeout", seconds=5)
        ex.timeout = 400  # ms, for the faulted call only
        with pytest.raises(ccxt.RequestTimeout):
            await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "t-1"})
        ex.timeout = 10_000
        assert [o.status for o in fake.orders_for("t-1")] == ["FILLED"]
        got = await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "t-1"})
        assert got["status"] == "closed" and got["filled"] == 0.01
    finally:
        await ex.close()


async def test_accept_then_5xx_and_unknown_status_place_the_order(fake, ex):
    fake.faults.next("POST /api/v3/order", "accept_5xx", status=502)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "a-1"})
    fake.faults.next("POST /api/v3/order", "unknown_status", code=-1007)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "a-2"})
    fake.faults.next("POST /api/v3/order", "unknown_status", code=-1006, accept=False)
    with pytest.raises(ccxt.OperationFailed):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "a-3"})
    assert [o.client_order_id for o in fake.orders] == ["a-1", "a-2"]
    # a blind retry with the same id is refused while the first is open: never send twice
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "a-1"})
    assert len(fake.orders_for("a-1")) == 1


async def test_order_not_found_for_the_first_queries_after_an_accept(fake, ex):
    await ex.create_order("BTC/USDT", "limit", "buy", 0.01, 19000.00, params={"clientOrderId": "e-1"})
    fake.faults.next("GET /api/v3/order", "order_not_found", count=2)
    for _ in range(2):
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "e-1"})
    assert (await ex.fetch_order(None, "BTC/USDT", params={"clientOrderId": "e-1"}))["status"] == "open"


async def test_injected_rejections_map_to_the_right_ccxt_errors_and_place_nothing(fake, ex):
    cases = [
        ("429", {}, ccxt.DDoSProtection),
        ("418", {"retry_after": 2}, ccxt.DDoSProtection),
        ("5xx", {"status": 500}, ccxt.ExchangeNotAvailable),
        ("clock_skew", {}, ccxt.InvalidNonce),
        ("insufficient_balance", {}, ccxt.InsufficientFunds),
        ("filter_failure", {}, ccxt.InvalidOrder),
        ("disconnect", {}, ccxt.NetworkError),
        (
            "error",
            {"code": -1003, "msg": "Too many requests. Please try again later.", "status": 400},
            ccxt.RateLimitExceeded,
        ),
    ]
    for kind, params, exc in cases:
        fake.faults.next("POST /api/v3/order", kind, **params)
        with pytest.raises(exc):
            await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": f"f-{kind}"})
    assert fake.orders == [] and fake.orders_received == []
    o = await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "f-ok"})
    assert o["status"] == "closed" and len(fake.orders) == 1


async def test_where_narrows_a_fault_to_one_client_order_id(fake, ex):
    fake.faults.next(
        "POST /api/v3/order", "insufficient_balance", where=lambda p: p.get("newClientOrderId") == "w-2"
    )
    await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "w-1"})
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "w-2"})
    assert [o.client_order_id for o in fake.orders] == ["w-1"]


async def test_malformed_parameters_are_refused_like_binance_and_never_crash_the_fake(fake, ex):
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "has space"})
    with pytest.raises(ccxt.BadRequest, match="-1100"):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "x" * 37})
    with pytest.raises(ccxt.InvalidOrder, match="PERCENT_PRICE_BY_SIDE"):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 200000.00)  # 10x the market
    with pytest.raises(ccxt.BadRequest):
        await ex.private_get_order({"symbol": "BTCUSDT", "orderId": "12x"})
    assert fake.orders == [] and fake.internal_errors == []

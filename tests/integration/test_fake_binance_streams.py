"""The fake Binance server's websocket streams, driven by the real ccxt.pro.binance and a raw client."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import ccxt
import pytest

from tests.fakes.binance import FakeBinance, make_exchange


@pytest.fixture
async def fake():
    async with FakeBinance() as f:
        yield f
        assert f.internal_errors == []


@pytest.fixture
async def wx(fake):
    e = make_exchange(fake, pro=True)
    await e.load_markets()
    yield e
    await e.close()


async def watch_after_subscribe(fake, coro, stream: str, push) -> object:
    """Start a ccxt.pro watch, wait until the fake sees its subscription, push an update, get the result."""
    task = asyncio.ensure_future(coro)
    try:
        await fake.wait_subscribed(stream)
        push()
        return await asyncio.wait_for(task, 10)
    finally:
        task.cancel()


async def test_watch_ticker_receives_the_pushed_price(fake, wx):
    t = await watch_after_subscribe(
        fake, wx.watch_ticker("ETH/USDT"), "ethusdt@miniTicker", lambda: fake.set_price("ETHUSDT", "1700.25")
    )
    assert t["symbol"] == "ETH/USDT" and t["last"] == 1700.25


async def test_watch_bids_asks_receives_book_ticker_updates(fake, wx):
    t = await watch_after_subscribe(
        fake,
        wx.watch_bids_asks(["BTC/USDT"]),
        "btcusdt@bookTicker",
        lambda: fake.set_book("BTCUSDT", "21000.00", "21000.05", "1.5", "2.5"),
    )
    bt = t["BTC/USDT"]
    assert (bt["bid"], bt["ask"], bt["bidVolume"], bt["askVolume"]) == (21000.0, 21000.05, 1.5, 2.5)


async def test_watch_trades_and_watch_ohlcv_receive_pushed_trades(fake, wx):
    trades = await watch_after_subscribe(
        fake,
        wx.watch_trades("BTC/USDT"),
        "btcusdt@trade",
        lambda: fake.add_trade("BTCUSDT", "21001.00", "0.5"),
    )
    assert [(x["price"], x["amount"]) for x in trades] == [(21001.0, 0.5)]
    candles = await watch_after_subscribe(
        fake,
        wx.watch_ohlcv("BTC/USDT", "1m"),
        "btcusdt@kline_1m",
        lambda: fake.add_trade("BTCUSDT", "21002.00", "0.5"),
    )
    assert candles[-1][4] == 21002.0 and candles[-1][2] >= 21002.0
    assert candles[-1][0] % 60_000 == 0


async def test_watch_order_book_syncs_the_snapshot_with_depth_diffs(fake, wx):
    ob = await watch_after_subscribe(fake, wx.watch_order_book("XRP/USDT"), "xrpusdt@depth", lambda: None)
    for i in range(1, 4):
        fake.set_book("XRPUSDT", f"0.50{i}0", f"0.50{i}2", bid_qty=str(100 * i), ask_qty="50")
        want = float(f"0.50{i}0")
        for _ in range(20):
            ob = await asyncio.wait_for(wx.watch_order_book("XRP/USDT"), 10)
            if ob["bids"][0][0] == want:
                break
        assert ob["bids"][0] == [want, 100.0 * i]
        assert ob["asks"][0] == [float(f"0.50{i}2"), 50.0]
        assert ob["nonce"] == fake.engine.books["XRPUSDT"].update_id
        # the diffs removed stale levels: the local book is exactly the fake's book
        rest = await asyncio.wait_for(wx.fetch_order_book("XRP/USDT", limit=20), 10)
        assert ob["bids"][:20] == rest["bids"] and ob["asks"][:20] == rest["asks"]


async def test_dropped_sockets_raise_network_error_and_a_new_watch_reconnects(fake, wx):
    task = asyncio.ensure_future(wx.watch_ticker("BTC/USDT"))
    await fake.wait_subscribed("btcusdt@miniTicker")
    assert fake.drop_websockets() >= 1
    with pytest.raises(ccxt.NetworkError):
        await asyncio.wait_for(task, 10)
    assert fake.subscriptions() == set()
    t = await watch_after_subscribe(
        fake, wx.watch_ticker("BTC/USDT"), "btcusdt@miniTicker", lambda: fake.set_price("BTCUSDT", "22000.00")
    )
    assert t["last"] == 22000.0
    assert fake.ws_connections_total >= 2


async def test_refused_websockets_fail_the_watch_while_rest_still_answers(fake):
    fake.refuse_websockets = True
    wx = make_exchange(fake, pro=True)
    try:
        await wx.load_markets()
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(wx.watch_ticker("BTC/USDT"), 10)
        assert (await wx.fetch_ticker("BTC/USDT"))["last"] > 0  # the REST fallback path
    finally:
        await wx.close()


async def test_raw_and_combined_streams_and_method_frames(fake):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{fake.ws_url}/stream?streams=btcusdt@bookTicker/ethusdt@trade") as ws:
            await fake.wait_subscribed("ethusdt@trade")
            fake.set_book("BTCUSDT", "20000.00", "20000.01")
            msg = json.loads((await ws.receive(timeout=10)).data)
            assert msg["stream"] == "btcusdt@bookTicker" and msg["data"]["b"] == "20000.00000000"
            fake.add_trade("ETHUSDT", "1600.00", "2")
            msg = json.loads((await ws.receive(timeout=10)).data)
            assert (
                msg["stream"] == "ethusdt@trade"
                and msg["data"]["e"] == "trade"
                and msg["data"]["p"] == "1600.00000000"
            )
        async with s.ws_connect(f"{fake.ws_url}/ws/btcusdt@kline_1h") as ws:
            await ws.send_json({"method": "SUBSCRIBE", "params": ["!ticker@arr"], "id": 7})
            assert json.loads((await ws.receive(timeout=10)).data) == {"result": None, "id": 7}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
            assert json.loads((await ws.receive(timeout=10)).data) == {
                "result": ["!ticker@arr", "btcusdt@kline_1h"],
                "id": 8,
            }
            fake.add_trade("BTCUSDT", "20001.00", "0.1")
            got = {}
            while len(got) < 2:
                m = json.loads((await ws.receive(timeout=10)).data)
                got["arr" if isinstance(m, list) else m["e"]] = m
            assert got["kline"]["k"]["i"] == "1h" and got["kline"]["k"]["c"] == "20001.00000000"
            assert got["arr"][0]["e"] == "24hrTicker" and got["arr"][0]["c"] == "20001.00000000"
            await ws.send_json(
                {"method": "UNSUBSCRIBE", "params": ["!ticker@arr", "btcusdt@kline_1h"], "id": 9}
            )
            assert json.loads((await ws.receive(timeout=10)).data) == {"result": None, "id": 9}
            assert fake.subscriptions() == set()


async def test_stream_interval_keeps_streams_ticking_without_changes():
    async with (
        FakeBinance(stream_interval=0.05) as fake,
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{fake.ws_url}/ws/solusdt@bookTicker") as ws,
    ):
        a = json.loads((await ws.receive(timeout=10)).data)
        b = json.loads((await ws.receive(timeout=10)).data)
        assert a["s"] == b["s"] == "SOLUSDT" and a["b"] == b["b"]


async def test_stream_interval_pushes_all_market_tickers_in_one_array():
    async with (
        FakeBinance(stream_interval=0.05) as fake,
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{fake.ws_url}/stream?streams=!ticker@arr") as ws,
    ):
        msg = json.loads((await ws.receive(timeout=10)).data)
        symbols = {t["s"] for t in msg["data"]}
        assert msg["stream"] == "!ticker@arr" and {"BTCUSDT", "SOLUSDT", "BTCUPUSDT"} <= symbols
        assert "LUNAUSDT" not in symbols  # halted symbols do not tick


async def test_watch_orders_and_watch_balance_receive_user_data_over_the_websocket_api(fake):
    wx = make_exchange(fake, pro=True, api_key=fake.api_key, secret=fake.secret)
    try:
        await wx.load_markets()
        orders_task = asyncio.ensure_future(wx.watch_orders("BTC/USDT"))
        await fake.wait_user_data()
        fake.set_book("BTCUSDT", "20000.00", "20000.02", "1", "1")
        placed = await wx.create_order(
            "BTC/USDT", "limit", "buy", 0.01, 19990.00, params={"clientOrderId": "u-1"}
        )
        orders = await asyncio.wait_for(orders_task, 10)
        assert [(o["clientOrderId"], o["status"]) for o in orders][-1] == ("u-1", "open")
        # a watch only sees messages that arrive while it waits: start both before the fill
        orders_task = asyncio.ensure_future(wx.watch_orders("BTC/USDT"))
        balance_task = asyncio.ensure_future(wx.watch_balance())
        await asyncio.sleep(0.2)  # both share the session already subscribed; nothing to wait for server-side
        fake.set_book("BTCUSDT", "19980.00", "19985.00", "1", "1")  # crosses the resting buy: it fills
        balance = await asyncio.wait_for(balance_task, 10)
        assert balance["BTC"]["free"] == float(fake.balance("BTC")[0])
        orders = await asyncio.wait_for(orders_task, 10)
        assert (orders[-1]["id"], orders[-1]["filled"], orders[-1]["status"]) == (
            placed["id"],
            0.01,
            "closed",
        )
    finally:
        await wx.close()


async def test_user_data_subscription_with_a_wrong_signature_is_refused(fake):
    wx = make_exchange(
        fake, pro=True, api_key=fake.api_key, secret="wrong-secret", fetchCurrencies=False, fetchMargins=False
    )  # load_markets must not need the key
    try:
        await wx.load_markets()
        with pytest.raises((ccxt.AuthenticationError, KeyError)) as err:
            await asyncio.wait_for(wx.watch_orders("BTC/USDT"), 10)
        # ccxt 4.5 trips over its own cleanup (KeyError 'spot') while raising the AuthenticationError
        cause = err.value if isinstance(err.value, ccxt.AuthenticationError) else err.value.__context__
        assert isinstance(cause, ccxt.AuthenticationError) and "-1022" in str(cause)
        assert fake.user_data_sessions() == 0
    finally:
        await wx.close()

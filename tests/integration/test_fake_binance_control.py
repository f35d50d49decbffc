"""The fake Binance server's limits, silent streams, and its stand-alone process with HTTP control."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import ccxt
import pytest

from tests.fakes.binance import FakeBinance, make_exchange
from tests.helpers import ROOT


async def test_weight_limit_answers_429_with_retry_after_once_the_minute_budget_is_spent():
    async with FakeBinance(weight_limit_1m=30) as fake, aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(5):
            async with s.get(fake.http_url + "/api/v3/exchangeInfo") as r:  # weight 20 each
                statuses.append((r.status, r.headers.get("Retry-After"), r.headers["X-MBX-USED-WEIGHT-1M"]))
        assert statuses[0] == (200, None, "20")
        assert all(st == 429 and int(ra) >= 1 for st, ra, _ in statuses[1:])
        assert [r.fault for r in fake.requests] == [None] + ["weight_limit"] * 4


async def test_order_rate_limit_refuses_new_orders_beyond_the_ten_second_budget():
    async with FakeBinance(order_limit_10s=3) as fake:
        ex = make_exchange(fake, api_key=fake.api_key, secret=fake.secret, config={"rateLimit": 1})
        try:
            await ex.load_markets()
            for i in range(3):
                await ex.create_order("BTC/USDT", "market", "buy", 0.001, params={"clientOrderId": f"r-{i}"})
            with pytest.raises(ccxt.DDoSProtection, match="-1015"):
                await ex.create_order("BTC/USDT", "market", "buy", 0.001, params={"clientOrderId": "r-3"})
            assert [o.client_order_id for o in fake.orders] == ["r-0", "r-1", "r-2"]
            assert fake.requests_to("/api/v3/order", "POST")[-1].fault == "order_limit"
        finally:
            await ex.close()


async def test_muted_streams_stay_connected_but_silent_then_resume():
    async with (
        FakeBinance() as fake,
        aiohttp.ClientSession() as s,
        s.ws_connect(f"{fake.ws_url}/ws/btcusdt@bookTicker") as ws,
    ):
        await fake.wait_subscribed("btcusdt@bookTicker")
        fake.mute_streams = True
        fake.set_book("BTCUSDT", "20000.00", "20000.01")
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
        assert fake.ws_client_count == 1
        fake.mute_streams = False
        fake.set_book("BTCUSDT", "20001.00", "20001.01")
        assert json.loads((await ws.receive(timeout=10)).data)["b"] == "20001.00000000"


async def test_module_entry_point_serves_another_process_and_obeys_http_control(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.binance",
        "--port",
        "0",
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        async with aiohttp.ClientSession() as s:
            async with s.post(
                info["http"] + "/fake/book", json={"symbol": "ETHUSDT", "bid": "1500.00", "ask": "1500.02"}
            ) as r:
                assert r.status == 200
            async with s.post(
                info["http"] + "/fake/faults",
                json={"endpoint": "POST /api/v3/order", "kind": "insufficient_balance"},
            ) as r:
                assert r.status == 200
            ex = make_exchange(None, http_base=info["http"], api_key=info["api_key"], secret=info["secret"])
            try:
                await ex.load_markets()
                assert (await ex.fetch_ticker("ETH/USDT"))["bid"] == 1500.0
                with pytest.raises(ccxt.InsufficientFunds):
                    await ex.create_order("ETH/USDT", "market", "buy", 0.01)
                await ex.create_order("ETH/USDT", "market", "buy", 0.01, params={"clientOrderId": "p-1"})
            finally:
                await ex.close()
            async with s.get(info["http"] + "/fake/orders") as r:
                orders = await r.json()
            assert [(o["clientOrderId"], o["status"]) for o in orders] == [("p-1", "FILLED")]
            async with s.post(info["http"] + "/fake/nonsense", json={}) as r:
                assert r.status == 404
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)

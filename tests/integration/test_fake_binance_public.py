"""The fake Binance server's public REST, driven by the real ccxt.async_support.binance (never mocked)."""

from __future__ import annotations

import csv
import json

import aiohttp
import ccxt
import pytest

from tests.fakes.binance import FakeBinance, make_exchange
from tests.fakes.binance.markets import vendored_data_dir

REAL_SPOT = ["BTC/USDT", "ETH/USDT", "ADA/USDT", "LTC/USDT", "XRP/USDT", "DOGE/USDT", "TRX/USDT"]


@pytest.fixture
async def fake():
    async with FakeBinance() as f:
        yield f
        assert f.internal_errors == []


@pytest.fixture
async def exchange(fake):
    ex = make_exchange(fake)
    yield ex
    await ex.close()


async def get_json(fake: FakeBinance, path: str, **params) -> tuple[int, object, dict]:
    async with aiohttp.ClientSession() as s, s.get(fake.http_url + path, params=params) as r:
        text = await r.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return r.status, body, dict(r.headers)


async def test_load_markets_parses_the_real_filters_exactly_as_the_vendored_file(exchange):
    markets = await exchange.load_markets()
    vendored = json.loads((vendored_data_dir() / "binance_markets_ccxt.json").read_text())
    for symbol in REAL_SPOT:
        m, want = markets[symbol], vendored[symbol]
        assert m["id"] == want["id"]
        assert m["limits"]["amount"] == want["limits"]["amount"]
        assert m["limits"]["price"] == want["limits"]["price"]
        assert m["limits"]["cost"] == want["limits"]["cost"]
        # the vendored file holds decimal places; ccxt >= 4.3 reports tick sizes (TICK_SIZE precision mode)
        assert m["precision"]["price"] == 10 ** -want["precision"]["price"]
        assert m["precision"]["amount"] == 10 ** -want["precision"]["amount"]
        assert m["info"]["filters"] == want["info"]["filters"]


async def test_universe_has_synthetic_symbols_including_a_leveraged_token_a_stable_and_a_halted_one(exchange):
    markets = await exchange.load_markets()
    for s in ("BNB/USDT", "SOL/USDT", "BTCUP/USDT", "USDC/USDT", "LUNA/USDT", "ETH/BTC", "XRP/ETH"):
        assert s in markets, s
    assert markets["LUNA/USDT"]["active"] is False
    assert markets["BTCUP/USDT"]["active"] is True
    assert markets["SOL/USDT"]["precision"]["price"] == 0.01
    assert markets["PEPE/USDT"]["precision"]["price"] == 1e-8
    usdt = [s for s, m in markets.items() if m["quote"] == "USDT" and m["spot"]]
    assert len(usdt) >= 15


async def test_fetch_ticker_follows_set_book_and_set_price(fake, exchange):
    fake.set_book("BTCUSDT", "30000.10", "30000.30", bid_qty="1.5", ask_qty="2")
    t = await exchange.fetch_ticker("BTC/USDT")
    assert (t["bid"], t["ask"], t["bidVolume"], t["askVolume"]) == (30000.10, 30000.30, 1.5, 2.0)
    fake.set_price("ETHUSDT", "1700.55")
    t = await exchange.fetch_ticker("ETH/USDT")
    assert t["last"] == 1700.55
    assert t["bid"] < 1700.55 < t["ask"]
    assert t["quoteVolume"] > 0


async def test_fetch_tickers_returns_every_symbol_and_set_ticker_controls_the_24h_volume(fake, exchange):
    fake.set_ticker("SOLUSDT", quote_volume="123456789.5")
    tickers = await exchange.fetch_tickers()
    assert set(tickers) == set((await exchange.load_markets()).keys())
    assert tickers["SOL/USDT"]["quoteVolume"] == 123456789.5
    two = await exchange.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert set(two) == {"BTC/USDT", "ETH/USDT"}
    assert len(fake.requests_to("/api/v3/ticker/24hr")) == 2


async def test_fetch_ohlcv_btcusdt_1h_serves_the_real_candles_of_the_vendored_csv(exchange):
    rows = list(csv.DictReader((vendored_data_dir() / "ohlcv" / "BTCUSDT-1h.csv").read_text().splitlines()))
    since = int(rows[100]["open_time"])
    candles = await exchange.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=50)
    assert len(candles) == 50
    for c, r in zip(candles, rows[100:150], strict=True):
        assert c == [
            int(r["open_time"]),
            float(r["open"]),
            float(r["high"]),
            float(r["low"]),
            float(r["close"]),
            float(r["volume"]),
        ]
    latest = await exchange.fetch_ohlcv("BTC/USDT", "1h", limit=3)
    assert latest[-1][0] == int(rows[-1]["open_time"])
    assert await exchange.fetch_ohlcv("BTC/USDT", "1h", since=int(rows[-1]["open_time"]) + 3_600_000) == []


async def test_real_klines_off_makes_btcusdt_1h_synthetic_and_current():
    async with FakeBinance(real_klines=False) as fake:
        ex = make_exchange(fake)
        try:
            candles = await ex.fetch_ohlcv("BTC/USDT", "1h", limit=24)
            assert len(candles) == 24
            assert candles[-1][0] <= fake.clock.now_ms() < candles[-1][0] + 3_600_000
        finally:
            await ex.close()


async def test_synthetic_ohlcv_is_deterministic_contiguous_and_ends_at_the_last_price(fake, exchange):
    fake.clock.freeze(1_790_000_000_000)
    a = await exchange.fetch_ohlcv("ETH/USDT", "1m", limit=100)
    b = await exchange.fetch_ohlcv("ETH/USDT", "1m", limit=100)
    assert a == b and len(a) == 100
    assert all(y[0] - x[0] == 60_000 for x, y in zip(a, a[1:], strict=False))
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in a)
    assert a[-1][4] == float(fake.engine.tickers["ETHUSDT"].last)
    since = a[10][0]
    c = await exchange.fetch_ohlcv("ETH/USDT", "1m", since=since, limit=5)
    assert c == a[10:15]
    async with FakeBinance() as other:  # another fake frozen at the same time serves the same candles
        other.clock.freeze(1_790_000_000_000)
        ex2 = make_exchange(other)
        try:
            assert await ex2.fetch_ohlcv("ETH/USDT", "1m", limit=100) == a
        finally:
            await ex2.close()


async def test_fetch_order_book_is_consistent_with_the_book_and_its_update_id(fake, exchange):
    fake.set_book("XRPUSDT", "0.5000", "0.5002", bid_qty="1000", ask_qty="800")
    ob = await exchange.fetch_order_book("XRP/USDT", limit=5)
    assert ob["bids"][0] == [0.5, 1000.0] and ob["asks"][0] == [0.5002, 800.0]
    assert len(ob["bids"]) == 5
    assert all(x[0] > y[0] for x, y in zip(ob["bids"], ob["bids"][1:], strict=False))
    assert all(x[0] < y[0] for x, y in zip(ob["asks"], ob["asks"][1:], strict=False))
    nonce = ob["nonce"]
    fake.set_book("XRPUSDT", "0.5001", "0.5003")
    assert (await exchange.fetch_order_book("XRP/USDT", limit=5))["nonce"] == nonce + 1
    ba = await exchange.fetch_bids_asks(["XRP/USDT"])
    assert ba["XRP/USDT"]["bid"] == 0.5001


async def test_raw_public_formats_and_errors_match_binance(fake):
    status, body, headers = await get_json(fake, "/api/v3/time")
    assert status == 200 and abs(body["serverTime"] - fake.clock.now_ms()) < 5_000
    assert "X-MBX-USED-WEIGHT-1M" in headers
    status, body, _ = await get_json(fake, "/api/v3/ticker/24hr", symbol="NOPEUSDT")
    assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    status, body, _ = await get_json(fake, "/api/v3/ticker/bookTicker", symbols='["BTCUSDT","ETHUSDT"]')
    assert [b["symbol"] for b in body] == ["BTCUSDT", "ETHUSDT"]
    status, body, _ = await get_json(fake, "/api/v3/exchangeInfo", symbol="BTCUSDT")
    assert [s["symbol"] for s in body["symbols"]] == ["BTCUSDT"]
    status, body, _ = await get_json(fake, "/api/v3/klines", symbol="BTCUSDT", interval="7m")
    assert (status, body["code"]) == (400, -1120)
    status, body, _ = await get_json(fake, "/api/v3/depth")
    assert body["code"] == -1102
    status, body, _ = await get_json(fake, "/api/v3/ping")
    assert (status, body) == (200, {})


async def test_429_carries_retry_after_and_maps_to_rate_limit_exceeded(fake, exchange):
    await exchange.load_markets()
    fake.faults.next("/api/v3/ticker/24hr", "429", retry_after=7)
    with pytest.raises(ccxt.DDoSProtection) as e:
        await exchange.fetch_ticker("BTC/USDT")
    assert "429" in str(e.value)
    status, _, headers = await get_json(fake, "/api/v3/ping")
    assert status == 200  # the fault fired once, on its own endpoint only
    fake.faults.next("*", "429", retry_after=7)
    status, body, headers = await get_json(fake, "/api/v3/ping")
    assert (status, headers["Retry-After"], body["code"]) == (429, "7", -1003)
    assert (await exchange.fetch_ticker("BTC/USDT"))["symbol"] == "BTC/USDT"


async def test_418_ban_blocks_every_request_until_it_expires(fake, exchange):
    await exchange.load_markets()
    fake.faults.next("GET /api/v3/depth", "418", ban_seconds=120)
    with pytest.raises(ccxt.DDoSProtection):
        await exchange.fetch_order_book("BTC/USDT")
    status, body, headers = await get_json(fake, "/api/v3/time")
    assert status == 418 and "IP banned until" in body["msg"] and int(headers["Retry-After"]) > 100
    fake.clock.advance(121_000)
    assert (await get_json(fake, "/api/v3/time"))[0] == 200


async def test_5xx_maps_to_exchange_not_available_and_delay_to_request_timeout(fake):
    ex = make_exchange(fake)
    try:
        await ex.load_markets()
        fake.faults.next("/api/v3/ticker/24hr", "5xx", status=502)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_ticker("BTC/USDT")
        fake.faults.next("/api/v3/ticker/24hr", "delay", seconds=3)
        ex.timeout = 300  # ms; only for the delayed call (a loaded CI machine may be slow otherwise)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_ticker("BTC/USDT")
        ex.timeout = 10_000
        fake.faults.next("/api/v3/ticker/24hr", "delay", seconds=0.05)
        assert (await ex.fetch_ticker("BTC/USDT"))["symbol"] == "BTC/USDT"
        assert [k for k, _, _ in fake.faults.fired] == ["5xx", "delay", "delay"]
    finally:
        await ex.close()


async def test_malformed_json_body_is_not_an_exception_in_ccxt_it_yields_empty_fields(fake, exchange):
    """A hazard every consumer must guard against: ccxt does not raise on a truncated JSON body, it
    returns a ticker whose prices are None and candles full of None. Validate what ccxt hands back."""
    await exchange.load_markets()
    fake.faults.next("/api/v3/ticker/24hr", "malformed")
    t = await exchange.fetch_ticker("BTC/USDT")
    assert t["last"] is None and t["bid"] is None and isinstance(t["info"], str)
    fake.faults.next("/api/v3/klines", "malformed")
    candles = await exchange.fetch_ohlcv("BTC/USDT", "1h", limit=5)
    assert all(c[4] is None for c in candles)
    assert (await exchange.fetch_ticker("BTC/USDT"))["last"] is not None  # one-shot fault


def test_run_in_thread_serves_sync_callers_and_stops():
    import urllib.request

    fake = FakeBinance.run_in_thread()
    try:
        fake.set_book("BTCUSDT", "25000.00", "25000.02")
        with urllib.request.urlopen(
            fake.http_url + "/api/v3/ticker/bookTicker?symbol=BTCUSDT", timeout=5
        ) as r:
            body = json.loads(r.read())
        assert body["bidPrice"] == "25000.00000000" and body["askPrice"] == "25000.02000000"
    finally:
        fake.close()

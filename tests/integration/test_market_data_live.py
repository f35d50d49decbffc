"""market_data in live mode (Binance public data) against the local fake Binance, with the real ccxt.

The service process points `ccxt.pro.binance` at the fake through `market_data.binance.rest_url/ws_url`;
the test drives the fake (prices, dropped sockets, 429, 418) and watches the bus.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from libs.common import subjects
from libs.common.contracts import Alert, MarketStatus, Tick, UniverseChanged
from tests.fakes.binance import FakeBinance
from tests.fakes.binance import make_exchange as fake_exchange
from tests.helpers import wait_heartbeat, wait_until

pytestmark = pytest.mark.integration

EXCLUDED = {"BTCUP/USDT", "USDC/USDT", "FDUSD/USDT", "LUNA/USDT", "ETH/BTC", "XRP/ETH"}


@pytest.fixture
def fake():
    f = FakeBinance.run_in_thread(stream_interval=0.25)
    yield f
    f.close()


class Watch:
    def __init__(self) -> None:
        self.ticks: dict[str, list[Tick]] = defaultdict(list)
        self.status: dict[str, list[MarketStatus]] = defaultdict(list)
        self.universe: list[UniverseChanged] = []
        self.alerts: list[Alert] = []

    async def attach(self, bus) -> Watch:
        async def on_tick(t, s):
            self.ticks[t.symbol].append(t)

        async def on_status(m, s):
            self.status[m.symbol].append(m)

        async def on_universe(u, s):
            self.universe.append(u)

        async def on_alert(a, s):
            self.alerts.append(a)

        await bus.subscribe(subjects.ALL_TICKS, Tick, on_tick)
        await bus.subscribe(subjects.ALL_STATUS, MarketStatus, on_status)
        await bus.subscribe(subjects.universe(), UniverseChanged, on_universe)
        await bus.subscribe(subjects.ALL_ALERTS, Alert, on_alert)
        await bus.nc.flush()
        return self

    def count(self, symbol: str) -> int:
        return len(self.ticks[symbol])


def _config(fake, **binance) -> dict:
    return {
        "paper_market_data_mode": "live",
        "market_data": {
            "stale_after_s": 1.5,
            "status_interval_s": 1,
            "candle_timeframes": ["1s"],
            "binance": {
                "rest_url": fake.http_url,
                "ws_url": fake.ws_url,
                "ws_retry_s": 0.5,
                "ws_silence_s": 2,
                "poll_interval_s": 0.2,
                "backoff_initial_s": 0.2,
                "backoff_max_s": 2,
                "errors_before_alert": 3,
                **binance,
            },
            "universe": {"mode": "fixed"},
        },
    }


def _polls(fake) -> list:
    """REST price polls (the universe scan asks for every ticker, without `symbols`)."""
    return [r for r in fake.requests_to("/api/v3/ticker/24hr") if "symbols" in r.params]


async def test_universe_scan_then_websocket_then_rest_fallback_then_websocket_again(services, bus, fake):
    w = await Watch().attach(bus)
    cfg = _config(fake)
    cfg["market_data"]["universe"] = {"mode": "top_volume", "top_n": 5, "refresh_s": 3600}
    services.configure(cfg)
    md = services.start("market_data")

    # the scan: top 5 USDT spot pairs by 24h quote volume, no stablecoin pair, no leveraged token, TRADING only
    await wait_until(lambda: w.universe, timeout=30, message="a universe")
    chosen = w.universe[-1].symbols
    ex = fake_exchange(fake)
    try:
        tickers = await ex.fetch_tickers()
    finally:
        await ex.close()
    eligible = {s: t["quoteVolume"] for s, t in tickers.items() if s.endswith("/USDT") and s not in EXCLUDED}
    assert len(chosen) == 5 and not set(chosen) & EXCLUDED
    assert min(eligible[s] for s in chosen) >= max(v for s, v in eligible.items() if s not in chosen)

    # the socket path: every symbol subscribed and ticking, no REST polling
    for s in chosen:
        await fake.wait_subscribed(f"{subjects.exchange_symbol(s).lower()}@ticker", timeout=20)
    sym = chosen[0]
    await wait_until(
        lambda: all(w.count(s) >= 3 for s in chosen), timeout=20, message="ticks for the universe"
    )
    assert all(t.source == "binance" for s in chosen for t in w.ticks[s])
    assert _polls(fake) == []

    # the socket drops and reconnecting is refused: prices keep coming over REST polling
    fake.refuse_websockets = True
    fake.drop_websockets()
    before = w.count(sym)
    await wait_until(
        lambda: len(_polls(fake)) >= 3 and w.count(sym) >= before + 3,
        timeout=20,
        message="ticks from REST polling",
    )
    assert w.status[sym][-1].status == "fresh"

    # the socket comes back: the service returns to it by itself
    connections = fake.ws_connections_total
    fake.refuse_websockets = False
    await wait_until(
        lambda: fake.ws_connections_total > connections and fake.subscriptions(),
        timeout=20,
        message="websocket reconnected",
    )
    await fake.wait_subscribed(f"{subjects.exchange_symbol(sym).lower()}@ticker", timeout=20)
    polls = len(_polls(fake))
    await asyncio.sleep(1.0)  # a window longer than the poll interval: a poll would show in it
    assert len(_polls(fake)) <= polls + 1  # polling stopped once the socket was back
    assert md.alive


async def test_rate_limit_429_retry_after_is_honoured(services, bus, fake):
    w = await Watch().attach(bus)
    services.configure(_config(fake, use_websocket=False))
    md = services.start("market_data")
    await wait_until(lambda: w.count("BTC/USDT") >= 3, timeout=30, message="ticks from REST polling")
    fake.faults.next("/api/v3/ticker/24hr", "429", retry_after=3)
    await wait_until(lambda: any(r.status == 429 for r in fake.requests), timeout=15, message="a 429")
    limited = next(r for r in fake.requests if r.status == 429)
    await wait_until(
        lambda: any(r.monotonic > limited.monotonic for r in list(fake.requests)),
        timeout=15,
        message="a request after the 429",
    )
    after = [r for r in list(fake.requests) if r.monotonic > limited.monotonic]
    assert after[0].monotonic - limited.monotonic >= 2.9  # nothing sent before Retry-After passed
    n = w.count("BTC/USDT")
    await wait_until(lambda: w.count("BTC/USDT") > n, timeout=15, message="ticks again after the wait")
    assert md.alive


async def test_ban_418_stops_every_request_alerts_goes_stale_and_recovers(services, bus, fake):
    w = await Watch().attach(bus)
    services.configure(_config(fake, use_websocket=False))
    md = services.start("market_data")
    await wait_until(
        lambda: w.status["BTC/USDT"] and w.status["BTC/USDT"][-1].status == "fresh",
        timeout=30,
        message="BTC/USDT fresh",
    )
    fake.faults.next("*", "418", retry_after=4, ban_seconds=4)
    await wait_until(
        lambda: any(a.severity == "SEV-2" and "418" in a.title for a in w.alerts),
        timeout=15,
        message="a SEV-2 alert for the ban",
    )
    await wait_until(lambda: w.status["BTC/USDT"][-1].status == "stale", timeout=15, message="BTC/USDT stale")
    hb = await wait_heartbeat(bus, "market_data")
    assert hb.status == "degraded" and "banned" in hb.detail  # the suite sees why
    await wait_until(
        lambda: w.status["BTC/USDT"][-1].status == "fresh",
        timeout=20,
        message="BTC/USDT fresh again after the ban",
    )
    banned = [r for r in fake.requests if r.status == 418]
    assert len(banned) == 1  # not one request during the ban
    after = [r for r in fake.requests if r.monotonic > banned[0].monotonic]
    assert after and after[0].monotonic - banned[0].monotonic >= 3.9
    assert md.alive


async def test_repeated_exchange_errors_raise_a_sev2_alert_and_the_service_keeps_running(services, bus, fake):
    w = await Watch().attach(bus)
    services.configure(_config(fake, use_websocket=False))
    md = services.start("market_data")
    await wait_until(lambda: w.count("ETH/USDT") >= 2, timeout=30, message="ticks")
    fake.faults.always("/api/v3/ticker/24hr", "5xx", status=503)
    await wait_until(
        lambda: any(a.title == "repeated exchange errors" for a in w.alerts),
        timeout=20,
        message="a SEV-2 alert for repeated errors",
    )
    await wait_until(lambda: w.status["ETH/USDT"][-1].status == "stale", timeout=15, message="ETH/USDT stale")
    fake.faults.clear()
    await wait_until(lambda: w.status["ETH/USDT"][-1].status == "fresh", timeout=20, message="fresh again")
    assert md.alive


async def test_frozen_price_marks_the_symbol_stale_with_a_sev2_alert_until_it_moves(services, bus, fake):
    w = await Watch().attach(bus)
    cfg = _config(fake)
    cfg["market_data"]["frozen_after_s"] = 2  # the fake re-pushes an unchanged ticker 4 times a second
    services.configure(cfg)
    md = services.start("market_data")
    await wait_until(
        lambda: any(a.title == "market data frozen: BTC/USDT" for a in w.alerts),
        timeout=30,
        message="a SEV-2 alert for the frozen price",
    )
    frozen = w.status["BTC/USDT"][-1]
    assert frozen.status == "stale" and "frozen" in frozen.reason
    n = w.count("BTC/USDT")
    assert n >= 4  # updates kept arriving: it is the price that froze, not the feed
    fake.set_price("BTCUSDT", "61234.5")
    await wait_until(
        lambda: w.status["BTC/USDT"][-1].status == "fresh", timeout=20, message="fresh once it moves"
    )
    assert md.alive


async def test_empty_scan_raises_a_sev2_alert_and_the_service_keeps_running(services, bus, fake):
    w = await Watch().attach(bus)
    cfg = _config(fake)
    cfg["market_data"]["universe"] = {"mode": "top_volume", "top_n": 5, "min_quote_volume": 1e18}
    services.configure(cfg)
    md = services.start("market_data")
    await wait_until(
        lambda: any(a.title == "empty market scan" and a.severity == "SEV-2" for a in w.alerts),
        timeout=30,
        message="a SEV-2 alert for the empty scan",
    )
    assert w.universe == [] and md.alive


async def test_exchange_klines_are_published_from_the_socket_and_from_rest_when_it_drops(services, bus, fake):
    candles: dict[tuple[str, str], list] = defaultdict(list)

    async def on_candle(c, s):
        candles[(c.symbol, c.timeframe)].append(c)

    from libs.common.contracts import Candle

    await bus.subscribe(subjects.ALL_CANDLES, Candle, on_candle)
    await bus.nc.flush()
    cfg = _config(fake, klines=True)
    cfg["market_data"]["candle_timeframes"] = [
        "1s",
        "5s",
    ]  # 1s: Binance klines; 5s: no such interval, from ticks
    services.configure(cfg)
    md = services.start("market_data")
    await fake.wait_subscribed("btcusdt@kline_1s", timeout=20)
    await wait_until(
        lambda: len(candles[("BTC/USDT", "1s")]) >= 3 and candles[("BTC/USDT", "5s")],
        timeout=30,
        message="1s klines and 5s aggregated candles",
    )
    opens = [c.open_time for c in candles[("BTC/USDT", "1s")]]
    assert opens == sorted(set(opens))  # each bar once, in order
    assert all(c.closed and c.source == "binance" for c in candles[("BTC/USDT", "1s")])
    fake.refuse_websockets = True
    fake.drop_websockets()
    await wait_until(
        lambda: len(fake.requests_to("/api/v3/klines")) >= 2, timeout=20, message="klines over REST"
    )
    n = len(candles[("BTC/USDT", "1s")])
    await wait_until(
        lambda: len(candles[("BTC/USDT", "1s")]) >= n + 2,
        timeout=20,
        message="1s candles keep coming over REST",
    )
    opens = [c.open_time for c in candles[("BTC/USDT", "1s")]]
    assert opens == sorted(set(opens))
    assert md.alive


async def test_recorded_btcusdt_1h_feed_gives_candles_equal_to_the_exchange_klines_backfilled_at_start(
    services, bus, fake
):
    """The fake serves the vendored BTCUSDT-1h.csv as its 1h klines: what market_data publishes for a 1h model is
    those klines, bar for bar (open time, OHLC, volume), backfilled at start, not bars rebuilt from ticker
    snapshots; and a new signal process (a heartbeat with a new instance) gets the history again."""
    import csv
    from datetime import UTC, datetime
    from decimal import Decimal

    from libs.common.contracts import Candle, Heartbeat
    from services.market_data.live import BACKFILL_BARS
    from tests.fakes.binance.markets import vendored_data_dir

    candles: list = []

    async def on_candle(c, s):
        candles.append(c)

    await bus.subscribe(subjects.candle("BTC/USDT", "1h"), Candle, on_candle)
    await bus.nc.flush()
    cfg = _config(fake, klines=True, use_websocket=False)
    cfg["symbols"] = ["BTC/USDT"]
    cfg["market_data"]["candle_timeframes"] = ["1h"]
    services.configure(cfg)
    md = services.start("market_data")
    await wait_until(lambda: len(candles) >= BACKFILL_BARS, timeout=30, message="the 1h backfill")
    text = (vendored_data_dir() / "ohlcv" / "BTCUSDT-1h.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    expected = [
        (
            datetime.fromtimestamp(int(r["open_time"]) / 1000, UTC),
            *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume")),
        )
        for r in rows[-BACKFILL_BARS:]
    ]
    got = [(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in candles[:BACKFILL_BARS]]
    assert got == expected
    assert all(c.closed and c.source == "binance" and c.timeframe == "1h" for c in candles)
    assert fake.requests_to("/api/v3/klines")  # from the exchange's klines endpoint

    # a signal process that starts later announces itself by its heartbeat: the history is sent again
    n = len(candles)
    await bus.publish(
        subjects.heartbeat("signal"),
        Heartbeat(ts=datetime.now(UTC), service="signal", instance="signal-a", uptime_s=1.0),
    )
    await wait_until(lambda: len(candles) >= n + BACKFILL_BARS, timeout=30, message="the backfill again")
    again = [(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in candles[n : n + BACKFILL_BARS]]
    assert again == expected
    assert md.alive


async def test_a_gap_in_klines_is_filled_with_the_exchanges_own_bars_never_glued(fake):
    """Between two published 1h klines four are missing: the source asks the exchange (the real ccxt against the
    fake serving the vendored BTCUSDT-1h.csv) for exactly those, publishes them in order, and counts the gap.
    When the exchange cannot answer, the gap stays a gap (no invented bar)."""
    from decimal import Decimal
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from libs.common.metrics import ServiceMetrics
    from libs.common.settings import BotSettings
    from services.market_data.ccxt_adapter import make_exchange as md_exchange
    from services.market_data.live import BinanceSource
    from tests.kit.market_data import source_ports

    class Recorder:
        def __init__(self):
            self.bars = []

        async def bar(self, bar, source):
            self.bars.append(bar)

    metrics = ServiceMetrics("market_data", CollectorRegistry())
    md = BotSettings().market_data.model_copy(
        update={
            "candle_timeframes": ["1h"],
            "binance": BotSettings().market_data.binance.model_copy(
                update={"rest_url": fake.http_url, "klines": True}
            ),
        }
    )
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    ports = source_ports(
        metrics,
        log=log,
        symbols=lambda: ["BTC/USDT"],
        errors=metrics.counter("source_errors_total", "e", ["kind"]),
        backoff_state=metrics.gauge("backoff_state", "b"),
    )
    src = BinanceSource(ports, md, ["BTC/USDT"])
    src.exchange = md_exchange(md.binance)
    try:
        rows = await src.exchange.fetch_ohlcv("BTC/USDT", "1h", limit=40)
        pub = Recorder()
        src._kline_published[("BTC/USDT", "1h")] = rows[10][0]
        await src._publish_klines(pub, "BTC/USDT", "1h", [rows[15]], closed_before=rows[-1][0])
        assert [b.open_time_ms for b in pub.bars] == [r[0] for r in rows[11:16]]
        assert [(b.open, b.high, b.low, b.close, b.volume) for b in pub.bars[:4]] == [
            tuple(Decimal(repr(x)) for x in r[1:6]) for r in rows[11:15]
        ]
        assert src.m_gaps.labels(timeframe="1h")._value.get() == 4
        gap_requests = [r for r in fake.requests_to("/api/v3/klines") if r.params.get("startTime")]
        assert gap_requests and int(gap_requests[-1].params["startTime"]) == rows[11][0]

        # the exchange fails the fill: the next bar is published after the hole, nothing made up
        fake.faults.always("/api/v3/klines", "5xx", status=503)
        pub2 = Recorder()
        src._kline_published[("BTC/USDT", "1h")] = rows[20][0]
        await src._publish_klines(pub2, "BTC/USDT", "1h", [rows[25]], closed_before=rows[-1][0])
        assert [b.open_time_ms for b in pub2.bars] == [rows[25][0]]
        assert src.m_gaps.labels(timeframe="1h")._value.get() == 8
    finally:
        fake.faults.clear()
        await src.exchange.close()

"""The operator's money view (/balance, /positions, /profit, /performance, /daily, /weekly, /monthly, /trades)
against a hand-computed fill history written into a real Postgres, read through a running ops_api."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

import httpx
import psycopg
import pytest

from libs.common import subjects
from libs.common.contracts import Fill, RiskVerdict, Tick, utcnow
from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN, ops_api_url, wait_until

VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
READS = (
    "/balance",
    "/positions",
    "/profit",
    "/performance",
    "/daily",
    "/weekly",
    "/monthly",
    "/trades",
    "/refusals",
)

# (trade id, time, symbol, side, quantity, price, fee in USDT, realized P&L as execution's ledger books it)
# BTC trip 1: buy 0.1 @ 50000 (fee 5, cost 5005); sell 0.1 @ 51000 (fee 5.1): 5100 - 5005 - 5.1 = 89.9
# BTC trip 2: buy 0.2 @ 52000 (fee 10.4, cost 10410.4); sell 0.1 @ 50000 (fee 5): 5000 - 5205.2 - 5 = -210.2;
#             sell 0.1 @ 51500 (fee 5.15): 5150 - 5205.2 - 5.15 = -60.35; trip: -270.55
# ETH trip 3 (open): buy 2 @ 3000 (fee 6, cost 6006); sell 1 @ 3100 (fee 3.1): 3100 - 3003 - 3.1 = 93.9;
#             1 ETH left at cost 3003
HISTORY = [
    ("t1", "2026-10-30T10:00:00Z", "BTC/USDT", "BUY", "0.1", "50000", "5", "0"),
    ("t2", "2026-11-02T10:00:00Z", "BTC/USDT", "SELL", "0.1", "51000", "5.1", "89.9"),
    ("t3", "2026-11-24T09:00:00Z", "BTC/USDT", "BUY", "0.2", "52000", "10.4", "0"),
    ("t4", "2026-11-24T15:00:00Z", "BTC/USDT", "SELL", "0.1", "50000", "5", "-210.2"),
    ("t5", "2026-11-25T08:00:00Z", "BTC/USDT", "SELL", "0.1", "51500", "5.15", "-60.35"),
    ("t6", "2026-11-25T12:00:00Z", "ETH/USDT", "BUY", "2", "3000", "6", "0"),
    ("t7", "2026-11-26T12:00:00Z", "ETH/USDT", "SELL", "1", "3100", "3.1", "93.9"),
]


def D(x) -> Decimal:
    assert x is not None
    return Decimal(str(x))


def write_fills(url: str, history) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for tid, ts, sym, side, qty, price, fee, pnl in history:
            conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, filled_quantity,"
                " created_at) VALUES (%s, %s, %s, %s, %s, 'FILLED', %s, %s)",
                (f"c-{tid}", f"v-{tid}", sym, side, qty, qty, ts),
            )
            conn.execute(
                "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee,"
                " fee_asset, fee_usdt, realized_pnl_usdt, ts) VALUES ('paper', %s, %s, %s, %s, %s, %s, %s,"
                " 'USDT', %s, %s, %s)",
                (tid, f"c-{tid}", sym, side, qty, price, fee, fee, pnl, ts),
            )


def write_book(url: str, last_prices: dict) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO positions (symbol, quantity, average_cost, realized_pnl_usdt, cost) VALUES"
            " ('BTC/USDT', 0, 0, -180.65, 0), ('ETH/USDT', 1, 3003, 93.9, 3003)"
        )
        conn.execute(
            "INSERT INTO balances (asset, free, locked) VALUES ('USDT', 10000, 500), ('ETH', 1, 0),"
            " ('BTC', 0, 0), ('DOGE', 100, 0)"
        )
        conn.execute(
            "INSERT INTO kv_state (key, value) VALUES ('account_state', %s)",
            (json.dumps({"equity_usdt": "13700", "last_prices": last_prices}),),
        )


@pytest.fixture
def ops(services, tmp_path):
    services.configure(
        {
            "ops_api": {"auth_max_failures": 50},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "backups")}},
        }
    )
    return serving(ops_api_url(services.start("ops_api")))


def serving(base: str, timeout: float = 15.0) -> str:
    """Started (its first heartbeat) comes before uvicorn accepts: wait for /health to answer (readiness)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)  # a poll's interval


@pytest.fixture
def journal(database_url):
    write_fills(database_url, HISTORY)
    write_book(
        database_url, {"ETH/USDT": "3200"}
    )  # BTC has no price from risk: its newest fill (51500) is used


def get(base: str, path: str, **params) -> dict:
    r = httpx.get(f"{base}{path}", params=params, headers=VIEW, timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def test_balance_values_each_asset_at_its_last_price_and_lists_the_unpriced(journal, ops):
    body = get(ops, "/balance")
    by = {a["asset"]: a for a in body["assets"]}
    assert (D(by["USDT"]["free"]), D(by["USDT"]["locked"]), D(by["USDT"]["value_usdt"])) == (
        10000,
        500,
        10500,
    )
    assert D(by["ETH"]["price_usdt"]) == 3200 and by["ETH"]["price_source"] == "risk"
    assert D(by["BTC"]["price_usdt"]) == 51500 and by["BTC"]["price_source"] == "fill"  # newest fill, t5
    assert by["DOGE"]["value_usdt"] is None and body["unpriced"] == ["DOGE"] and body["complete"] is False
    assert D(body["total_usdt"]) == Decimal("13700")  # 10500 + 3200 + 0, DOGE not guessed


def test_positions_show_cost_last_price_unrealized_and_exposure(journal, ops):
    body = get(ops, "/positions")
    (eth,) = body["positions"]  # BTC is flat: not listed
    assert eth["symbol"] == "ETH/USDT" and D(eth["quantity"]) == 1 and D(eth["average_cost"]) == 3003
    assert D(eth["last_price"]) == 3200 and D(eth["unrealized_pnl_usdt"]) == 197  # 3200 - 3003
    assert D(eth["exposure_usdt"]) == 3200
    assert abs(D(eth["exposure_ratio"]) - Decimal(3200) / Decimal(13700)) < Decimal("1e-12")
    assert abs(D(eth["unrealized_pnl_ratio"]) - Decimal(197) / Decimal(3003)) < Decimal("1e-12")
    assert D(body["total_unrealized_pnl_usdt"]) == 197 and body["unpriced"] == []
    assert get(ops, "/positions", symbol="BTC/USDT")["positions"] == []


async def test_the_account_is_on_the_metrics_per_symbol_and_asset(journal, ops):
    def series() -> dict[str, float]:
        text = httpx.get(f"{ops}/metrics", timeout=10).text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("bnml_ops_api_")
        }

    await wait_until(
        lambda: 'bnml_ops_api_position_exposure_usdt{symbol="ETH/USDT"}' in series(),
        20,
        message="per-symbol gauges",
    )
    s = series()
    assert s['bnml_ops_api_position_exposure_usdt{symbol="ETH/USDT"}'] == 3200
    assert s['bnml_ops_api_position_unrealized_pnl_usdt{symbol="ETH/USDT"}'] == 197
    assert s['bnml_ops_api_realized_pnl_usdt{symbol="BTC/USDT"}'] == pytest.approx(-180.65)
    assert s['bnml_ops_api_fees_usdt{symbol="ETH/USDT"}'] == pytest.approx(9.1)
    assert s['bnml_ops_api_balance_value_usdt{asset="USDT"}'] == 10500
    assert (
        s['bnml_ops_api_trading_state{state="ACTIVE"}'] == 1
        and s['bnml_ops_api_trading_state{state="HALTED"}'] == 0
    )
    assert s["bnml_ops_api_kill_switch_engaged"] == 0


def test_profit_over_all_history_and_since_a_date(journal, ops):
    p = get(ops, "/profit")
    assert D(p["realized_pnl_usdt"]) == Decimal("-86.75")  # 89.9 - 210.2 - 60.35 + 93.9
    assert D(p["fees_usdt"]) == Decimal("39.75") and p["fills"] == 7
    assert D(p["unrealized_pnl_usdt"]) == 197 and D(p["total_pnl_usdt"]) == Decimal("110.25")
    assert (p["trades_closed"], p["trades_open"], p["wins"], p["losses"]) == (2, 1, 1, 1)
    assert D(p["win_rate"]) == Decimal("0.5")
    assert p["best_trade"]["symbol"] == "BTC/USDT" and D(p["best_trade"]["realized_pnl_usdt"]) == Decimal(
        "89.9"
    )
    assert D(p["worst_trade"]["realized_pnl_usdt"]) == Decimal("-270.55")
    # realized curve 0, 89.9, 89.9, -120.3, -180.65, ...: peak 89.9, trough -180.65 at t5
    assert D(p["max_drawdown_usdt"]) == Decimal("270.55") and D(p["drawdown_peak_usdt"]) == Decimal("89.9")
    assert p["drawdown_trough_at"].startswith("2026-11-25T08:00:00")

    s = get(ops, "/profit", since="2026-11-24")
    assert D(s["realized_pnl_usdt"]) == Decimal("-176.65") and D(s["fees_usdt"]) == Decimal("29.65")
    assert (s["fills"], s["trades_closed"], s["wins"], s["losses"]) == (5, 1, 0, 1)
    assert D(s["win_rate"]) == 0 and D(s["max_drawdown_usdt"]) == Decimal("270.55")  # from the window's 0
    assert s["since"] == "2026-11-24T00:00:00+00:00"
    late = get(ops, "/profit", since="2026-12-01T00:00:00Z")
    assert late["fills"] == 0 and late["win_rate"] is None and D(late["max_drawdown_usdt"]) == 0


def test_performance_per_symbol(journal, ops):
    rows = {r["symbol"]: r for r in get(ops, "/performance")["symbols"]}
    btc, eth = rows["BTC/USDT"], rows["ETH/USDT"]
    assert D(btc["realized_pnl_usdt"]) == Decimal("-180.65") and D(btc["fees_usdt"]) == Decimal("30.65")
    assert (btc["fills"], btc["trades_closed"], btc["wins"], btc["losses"]) == (5, 2, 1, 1)
    assert D(btc["win_rate"]) == Decimal("0.5") and D(btc["worst_trade_pnl_usdt"]) == Decimal("-270.55")
    assert D(btc["volume_quote"]) == Decimal("5000") + 5100 + 10400 + 5000 + 5150
    assert (
        D(eth["realized_pnl_usdt"]) == Decimal("93.9")
        and eth["trades_closed"] == 0
        and eth["win_rate"] is None
    )
    assert [r["symbol"] for r in get(ops, "/performance")["symbols"]] == [
        "ETH/USDT",
        "BTC/USDT",
    ]  # best first


def test_daily_weekly_monthly_include_empty_periods(journal, ops):
    d = get(ops, "/daily", count=4, until="2026-11-26")
    assert [p["period_start"] for p in d["periods"]] == [
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-26",
    ]
    figures = [
        (D(p["realized_pnl_usdt"]), D(p["fees_usdt"]), p["fills"], p["trades_closed"]) for p in d["periods"]
    ]
    assert figures == [
        (0, 0, 0, 0),
        (Decimal("-210.2"), Decimal("15.4"), 2, 0),
        (Decimal("-60.35"), Decimal("11.15"), 2, 1),
        (Decimal("93.9"), Decimal("3.1"), 1, 0),
    ]
    w = get(ops, "/weekly", count=5, until="2026-11-26")
    assert [p["period_start"] for p in w["periods"]] == [
        "2026-10-26",
        "2026-11-02",
        "2026-11-09",
        "2026-11-16",
        "2026-11-23",
    ]  # Mondays
    assert [(D(p["realized_pnl_usdt"]), p["fills"], p["trades_closed"], p["wins"]) for p in w["periods"]] == [
        (0, 1, 0, 0),
        (Decimal("89.9"), 1, 1, 1),
        (0, 0, 0, 0),
        (0, 0, 0, 0),
        (Decimal("-176.65"), 5, 1, 0),
    ]
    m = get(ops, "/monthly", count=2, until="2026-11-26")
    assert [
        (p["period_start"], D(p["realized_pnl_usdt"]), D(p["fees_usdt"]), p["fills"]) for p in m["periods"]
    ] == [("2026-10-01", 0, 5, 1), ("2026-11-01", Decimal("-86.75"), Decimal("34.75"), 6)]
    assert D(m["realized_pnl_usdt"]) == Decimal("-86.75")


def test_trades_are_round_trips_from_fills(journal, ops):
    body = get(ops, "/trades")
    assert [(t["symbol"], t["is_open"]) for t in body["items"]] == [
        ("ETH/USDT", True),
        ("BTC/USDT", False),
        ("BTC/USDT", False),
    ]
    eth, trip2, trip1 = body["items"]
    assert D(trip2["entry_quantity"]) == Decimal("0.2") and D(trip2["entry_price"]) == 52000
    assert (
        D(trip2["exit_quantity"]) == Decimal("0.2") and D(trip2["exit_price"]) == 50750
    )  # (5000 + 5150) / 0.2
    assert D(trip2["realized_pnl_usdt"]) == Decimal("-270.55") and D(trip2["fees_usdt"]) == Decimal(
        "20.55"
    )  # 10.4 + 5 + 5.15
    assert D(trip2["duration_s"]) == 23 * 3600 and trip2["closed_at"].startswith("2026-11-25T08:00")
    assert abs(D(trip2["realized_pnl_ratio"]) - Decimal("-270.55") / Decimal("10410.4")) < Decimal("1e-12")
    assert sorted(trip2["client_order_ids"]) == ["c-t3", "c-t4", "c-t5"]
    assert D(trip1["realized_pnl_usdt"]) == Decimal("89.9") and trip1["fills"] == 2
    assert (
        eth["closed_at"] is None
        and D(eth["quantity_open"]) == 1
        and D(eth["realized_pnl_usdt"]) == Decimal("93.9")
    )
    assert len(get(ops, "/trades", state="closed")["items"]) == 2
    assert [t["symbol"] for t in get(ops, "/trades", state="open")["items"]] == ["ETH/USDT"]
    page = get(ops, "/trades", limit=1, offset=1)
    assert page["items"][0]["trade_id"] == trip2["trade_id"] and page["next_offset"] == 2
    assert len(get(ops, "/trades", since="2026-11-25")["items"]) == 2  # trip 1 ended on 11-02


def test_a_sale_beyond_the_recorded_position_does_not_close_the_next_round_trip(database_url, ops):
    # 1 SOL held before the journal began is sold (no known cost: realizes nothing); then buy 2, sell 1:
    # the position is 1 SOL (clamped at 0 after s1, like the ledger), so the round trip is still open
    write_fills(
        database_url,
        [
            ("s1", "2026-11-20T10:00:00Z", "SOL/USDT", "SELL", "1", "100", "0.1", "0"),
            ("s2", "2026-11-21T10:00:00Z", "SOL/USDT", "BUY", "2", "100", "0.2", "0"),
            ("s3", "2026-11-22T10:00:00Z", "SOL/USDT", "SELL", "1", "110", "0.11", "9.79"),
        ],
    )
    trades = get(ops, "/trades")["items"]
    assert [(t["fills"], t["is_open"], D(t["quantity_open"])) for t in trades] == [
        (2, True, 1)
    ]  # s1 in no trip
    assert D(trades[0]["realized_pnl_usdt"]) == Decimal("9.79")  # 110 - 200.2 / 2 - 0.11


def test_refusals_per_reason_and_breaker_trips_over_the_last_hours(database_url, ops):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO refusal_minutes (minute, reason, n) VALUES"
            " (date_trunc('minute', now()) - interval '1 hour', 'stale_data', 3),"
            " (date_trunc('minute', now()) - interval '2 hours', 'stale_data', 2),"
            " (date_trunc('minute', now()) - interval '3 hours', 'daily_loss_budget', 4),"
            " (date_trunc('minute', now()) - interval '30 hours', 'stale_data', 100)"
        )
        conn.execute(
            "INSERT INTO breaker_log (event_id, kind, breaker, reason, ts) VALUES"
            " ('b1', 'tripped', 'stale_data:BTC/USDT', 'old', now() - interval '1 hour'),"
            " ('b2', 'cleared', 'stale_data:BTC/USDT', 'fresh', now() - interval '50 minutes'),"
            " ('b3', 'tripped', 'stale_data:BTC/USDT', 'old', now() - interval '10 minutes'),"
            " ('b4', 'tripped', 'volatility', 'x', now() - interval '40 hours')"
        )
    body = get(ops, "/refusals", hours=24)
    assert [(r["reason"], r["n"]) for r in body["refusals"]] == [("stale_data", 5), ("daily_loss_budget", 4)]
    assert [(b["breaker"], b["trips"]) for b in body["breaker_trips"]] == [("stale_data:BTC/USDT", 2)]
    assert [(b["breaker"], b["trips"]) for b in get(ops, "/refusals", hours=48)["breaker_trips"]] == [
        ("stale_data:BTC/USDT", 2),
        ("volatility", 1),
    ]


def test_invalid_input_gets_a_4xx_naming_the_parameter(ops):
    cases = [
        ("/profit", {"since": "yesterday"}, "since"),
        ("/profit", {"since": "2026-11-24T00:00:00"}, "since"),
        ("/trades", {"state": "maybe"}, "state"),
        ("/daily", {"count": 0}, "count"),
        ("/daily", {"until": "1900-01-01"}, "until"),
        ("/weekly", {"until": "not-a-date"}, "until"),
        ("/positions", {"symbol": "btc/usdt"}, "symbol"),
        ("/trades", {"limit": 100000}, "limit"),
        ("/performance", {"since": "2026-13-01"}, "since"),
        ("/refusals", {"hours": 0}, "hours"),
    ]
    for path, params, name in cases:
        r = httpx.get(f"{ops}{path}", params=params, headers=VIEW, timeout=10)
        assert r.status_code == 422, (path, params, r.status_code, r.text)
        assert r.json()["detail"].startswith(name), (path, params, r.text)


def test_every_read_endpoint_needs_a_token_and_the_viewer_one_suffices(ops):
    schema = httpx.get(f"{ops}/openapi.json", timeout=10).json()
    assert set(READS) <= set(schema["paths"])
    for path in READS:
        assert httpx.get(f"{ops}{path}", timeout=10).status_code == 401, path
        assert (
            httpx.get(
                f"{ops}{path}", headers={"Authorization": "Bearer wrong-token-000"}, timeout=10
            ).status_code
            == 401
        ), path
        for token in (VIEWER_TOKEN, OPERATOR_TOKEN):
            r = httpx.get(f"{ops}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 200, (path, r.text)  # an empty journal reads as zeros, not an error


async def test_a_fill_published_on_the_bus_reaches_an_event_stream_client(ops, bus):
    fill = Fill(
        ts=utcnow(),
        client_order_id="c-live-1",
        trade_id="live-1",
        symbol="BTC/USDT",
        side="BUY",
        quantity=Decimal("0.01"),
        price=Decimal("50000"),
        fee=Decimal("0.5"),
    )
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        async with c.stream("GET", "/events", headers=VIEW) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.aiter_lines()
            assert (await anext(lines)).startswith("retry:")  # joined the hub: later events reach this client
            await bus.publish(subjects.fill("BTCUSDT"), fill)
            frame: dict[str, str] = {}
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith(("id:", "event:", "data:")):
                        key, _, value = line.partition(": ")
                        frame[key.rstrip(":")] = value
                    elif not line and frame.get("event") == "fill":
                        break
    data = json.loads(frame["data"])
    assert (data["client_order_id"], data["trade_id"], data["price"]) == ("c-live-1", "live-1", "50000")
    assert data["subject"] == subjects.fill("BTCUSDT") and int(frame["id"]) >= 1


def test_the_event_stream_needs_a_token(ops):
    for headers in ({}, {"Authorization": "Bearer wrong-token-000"}):
        r = httpx.get(f"{ops}/events", headers=headers, timeout=10)
        assert r.status_code == 401 and "token" in r.json()["detail"]
    r = httpx.get(f"{ops}/events", headers={**VIEW, "Last-Event-ID": "abc"}, timeout=10)
    assert r.status_code == 422 and r.json()["detail"].startswith("last-event-id")


@pytest.fixture
def trading(services, tmp_path):
    """risk + execution + ops_api on one symbol; the test feeds prices (no market_data process)."""
    services.configure(
        {
            "symbols": ["BTC/USDT"],
            "ops_api": {"auth_max_failures": 50},
            "risk": {"heartbeat_services": ["execution"], "cooldown_after_breaker_s": 0},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "backups")}},
        }
    )
    for name in ("risk", "execution"):
        services.start(name)
    return serving(ops_api_url(services.start("ops_api")))


async def test_pause_resume_and_exit_go_through_risk_and_are_audited(trading, bus, database_url):
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    verdicts: list = []

    async def on_verdict(v, subject):
        verdicts.append(v)

    async def prices():
        while True:
            await bus.publish(
                subjects.last("BTC/USDT"),
                Tick(
                    ts=utcnow(),
                    symbol="BTC/USDT",
                    bid=Decimal("49999"),
                    ask=Decimal("50001"),
                    last=Decimal("50000"),
                    volume=Decimal("1"),
                ),
            )
            await asyncio.sleep(0.2)  # a price feed's pace

    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
    feeder = asyncio.create_task(prices())
    try:
        async with httpx.AsyncClient(base_url=trading, timeout=10) as c:

            async def state() -> str:
                return (await c.get("/status", headers=VIEW)).json()["trading_state"]

            await wait_until(lambda: _is(state, "ACTIVE"), 20, message="risk ACTIVE with fresh prices")
            assert (
                await c.post("/control", json={"action": "pause", "reason": "x"}, headers=VIEW)
            ).status_code == 403
            r = await c.post(
                "/control", json={"action": "pause", "reason": "news at 14:00", "actor": "alice"}, headers=op
            )
            assert (
                r.status_code == 200
                and r.json()["accepted"] is True
                and r.json()["trading_state"] == "REDUCING"
            )
            await wait_until(lambda: _is(state, "REDUCING"), 10, message="status REDUCING")
            key = {**op, "Idempotency-Key": "resume-1"}
            r = await c.post("/control", json={"action": "resume", "reason": "news passed"}, headers=key)
            assert r.status_code == 200 and r.json()["trading_state"] == "ACTIVE"
            again = await c.post("/control", json={"action": "resume", "reason": "news passed"}, headers=key)
            assert again.json()["replayed"] is True and again.json()["command_id"] == r.json()["command_id"]

            r = await c.post(
                "/control", json={"action": "exit", "symbol": "BTC/USDT", "reason": "flat"}, headers=op
            )
            assert (
                r.status_code == 409 and "no_position" in r.json()["detail"]
            )  # risk's book holds nothing yet
            assert not verdicts
            await bus.publish(
                subjects.fill("BTCUSDT"),
                Fill(
                    ts=utcnow(),
                    client_order_id="c-ext-1",
                    trade_id="ext-1",
                    symbol="BTC/USDT",
                    side="BUY",
                    quantity=Decimal("0.001"),
                    price=Decimal("50000"),
                    fee=Decimal("0.05"),
                ),
            )
            r = await wait_until(
                lambda: _exit(c, op), 10, message="risk saw the position and approved the exit"
            )
            body = r.json()
            assert body["accepted"] is True and D(body["quantity"]) == Decimal("0.001") and body["verdict_id"]
            await wait_until(
                lambda: any(v.id == body["verdict_id"] for v in verdicts), 5, message="exit verdict"
            )
            (v,) = [v for v in verdicts if v.id == body["verdict_id"]]
            assert v.approved and v.side == "SELL" and v.signal_id == body["command_id"]
            r = await c.post("/control", json={"action": "exit", "reason": "no symbol"}, headers=op)
            assert r.status_code == 422 and "symbol" in r.json()["detail"]
    finally:
        feeder.cancel()
    audit = [
        r[0]
        for r in psycopg.connect(database_url)
        .execute("SELECT action || ':' || outcome FROM api_audit WHERE path = '/control' ORDER BY id")
        .fetchall()
    ]
    assert audit[:4] == [
        "POST /control:refused",
        "control.pause:applied",
        "control.resume:applied",
        "control.exit:refused",
    ] and audit[-2:] == ["control.exit:applied", "POST /control:invalid_input"]


async def _is(get_state, want: str) -> bool:
    return await get_state() == want


async def _exit(c: httpx.AsyncClient, op: dict):
    r = await c.post("/control", json={"action": "exit", "symbol": "BTC/USDT", "reason": "flat"}, headers=op)
    return r if r.status_code == 200 else None


async def test_the_daily_dod_report_appears_without_any_command(services, tmp_path, database_url):
    today = utcnow().date()
    days = [today - timedelta(days=2), today - timedelta(days=1)]
    with psycopg.connect(database_url, autocommit=True) as conn:  # the suite ran two days ago for a minute
        conn.execute(
            "INSERT INTO heartbeat_minutes (service, minute, beats, ok_beats, last_ts) VALUES"
            " ('risk', %s, 60, 60, %s)",
            (datetime.combine(days[0], dtime(10), tzinfo=UTC),) * 2,
        )
    services.configure(
        {
            "monitoring": {"dod": {"deliver": True}},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "backups")}},
        }
    )
    services.start("ops_api")
    out = tmp_path / "artifacts" / "reports" / "dod"  # the default reports_dir, under storage.artifacts_dir
    files = [out / "daily" / f"{d.isoformat()}.json" for d in days]
    await wait_until(
        lambda: all(f.exists() for f in files) and (out / "dod_v1_summary.md").exists(),
        30,
        message="the closed days' DoD files",
    )
    assert not (out / "daily" / f"{today.isoformat()}.json").exists()  # today is not closed yet
    assert json.loads(files[0].read_text())["day"] == days[0].isoformat()

    def stored():
        with psycopg.connect(database_url) as conn:
            return {r[0]: r[1] for r in conn.execute("SELECT day, passed FROM dod_reports").fetchall()}, [
                r[0]
                for r in conn.execute(
                    "SELECT dedup_key FROM alerts WHERE dedup_key LIKE 'ops_api:dod:%%' ORDER BY dedup_key"
                ).fetchall()
            ]

    await wait_until(lambda: len(stored()[1]) == 2, 15, message="both results sent to the alert channels")
    reports, alerts = stored()
    assert set(reports) == set(days) and alerts == [f"ops_api:dod:{d.isoformat()}" for d in days]

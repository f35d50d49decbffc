"""ops_api benchmark: `dod_report_7d_s`, the DoD v1 report over 7 days of generated history.

History at a realistic rate, written the way the recorder writes it: heartbeats every 2 s from 5 services
(1.5 M heartbeats, kept as per-minute coverage rows), 2,000 orders and fills a day, market-data
transitions, breaker events, refusals per minute, alert deliveries, a backup a day. The figure is the
wall time of `generate_dod_report --days 7` minus process start: compute from Postgres, store the 7 reports
in Postgres, write the 7 JSON files and the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bnml.embedded import EmbeddedPostgres
from libs.common.db import migrate

SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def generate_history(url: str, days: int, end: datetime, orders_per_day: int = 2000) -> dict[str, int]:
    start = end - timedelta(days=days)
    with psycopg.connect(url, autocommit=True) as conn:
        for svc in SERVICES:
            conn.execute(
                "INSERT INTO heartbeat_minutes (service, minute, beats, ok_beats, last_ts)"
                " SELECT %s, m, 30, 30, m + interval '58 seconds' FROM generate_series(%s::timestamptz,"
                " %s::timestamptz - interval '1 minute', interval '1 minute') m",
                (svc, start, end),
            )
        n_orders = orders_per_day * days
        step = timedelta(days=days) / n_orders
        conn.execute(
            "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, filled_quantity,"
            " average_price, fee_usdt, tick_ts, created_at)"
            " SELECT 'c' || i, 'v' || i, (ARRAY['BTC/USDT','ETH/USDT','SOL/USDT'])[1 + i %% 3],"
            " CASE WHEN i %% 2 = 0 THEN 'BUY' ELSE 'SELL' END, 0.001,"
            " CASE WHEN i %% 97 = 0 THEN 'REJECTED' ELSE 'FILLED' END, 0.001, 50000, 0.05,"
            " %s + i * %s - (5 + (i %% 40)) * interval '1 millisecond', %s + i * %s"
            " FROM generate_series(0, %s - 1) i",
            (start, step, start, step, n_orders),
        )
        conn.execute(
            "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,"
            " realized_pnl_usdt, ts) SELECT 'paper', 't' || client_order_id, client_order_id, symbol, side, 0.001,"
            " 50000, 0.05, 'USDT', CASE WHEN side = 'SELL' THEN (random() - 0.48) * 2 ELSE 0 END,"
            " created_at + interval '3 milliseconds' FROM orders WHERE status = 'FILLED'"
        )
        conn.execute(
            "INSERT INTO market_status_events (symbol, status, age_s, ts) SELECT s, CASE WHEN h %% 2 = 0 THEN 'stale'"
            " ELSE 'fresh' END, 10, %s + h * interval '1 hour' + (h %% 2) * interval '20 seconds'"
            " FROM generate_series(0, %s * 24 - 1) h, unnest(ARRAY['BTC/USDT','ETH/USDT','SOL/USDT']) s",
            (start, days),
        )
        conn.execute(
            "INSERT INTO breaker_log (event_id, kind, breaker, effect, reason, ts) SELECT 'b' || i,"
            " CASE WHEN i %% 2 = 0 THEN 'tripped' ELSE 'cleared' END, (ARRAY['volatility','drift','spread'])[1 + i %% 3],"
            " 'REDUCING', 'generated', %s + i * interval '17 minutes' FROM generate_series(0, %s * 84) i",
            (start, days),
        )
        conn.execute(
            "INSERT INTO refusal_minutes (minute, reason, n) SELECT m, r, 1 + (extract(minute FROM m)::int %% 5)"
            " FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', interval '1 minute') m,"
            " unnest(ARRAY['max_notional','stale_market_data','breaker:volatility']) r",
            (start, end),
        )
        conn.execute(
            "INSERT INTO alert_deliveries (alert_id, channel, ok, ts) SELECT 'a' || i, 'webhook', i %% 200 <> 0,"
            " %s + i * interval '7 minutes' FROM generate_series(0, %s * 205) i",
            (start, days),
        )
        conn.execute(
            "INSERT INTO backups (started_at, finished_at, ok, path) SELECT %s + d * interval '1 day' + interval '1 hour',"
            " %s + d * interval '1 day' + interval '1 hour 2 seconds', true, 'x' FROM generate_series(0, %s - 1) d",
            (start, start, days),
        )
        conn.execute("ANALYZE")
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("heartbeat_minutes", "orders", "fills", "market_status_events", "refusal_minutes")
        }
    return counts


def run(quick: bool = False) -> dict[str, float]:
    from libs.common.settings import load_settings
    from services.ops_api.tooling import generate

    with tempfile.TemporaryDirectory(prefix="bnml-bench-ops-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fsync=False).start()
        try:
            migrate(pg.url)
            end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            generate_history(pg.url, 7, end, orders_per_day=500 if quick else 2000)
            settings = load_settings()
            runs = 1 if quick else 3
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                result = asyncio.run(
                    generate(
                        settings,
                        pg.url,
                        7,
                        last_day=(end - timedelta(days=1)).date(),
                        out_dir=Path(tmp) / "dod",
                        progress=False,
                    )
                )
                times.append(time.perf_counter() - t0)
            assert len(result.reports) == 7 and all(r.status != "no_data" for r in result.reports)
        finally:
            pg.stop("immediate")
    return {"dod_report_7d_s": sorted(times)[len(times) // 2], **run_console(quick)}


# -- the console: page load against 10,000 fills, and a fill's way from the bus to an SSE client ---------------
CONSOLE_REQUESTS = (
    "/",
    "/console/console.js",
    "/console/console.css",
    "/status",
    "/profit",
    "/balance",
    "/positions",
    "/daily?count=30",
    "/breakers?limit=20",
    "/refusals?hours=24",
    "/dod/summary?days=7",
    "/incidents?limit=20",
    "/fills?limit=50",
    "/orders?limit=50",
    "/trades?limit=30",
)
TOKEN = "bench-viewer-token-0123456789"


def write_fills(url: str, n: int, end: datetime) -> None:
    """`n` fills over 30 days on 3 symbols, alternating BUY and SELL (round trips), with their orders."""
    step = timedelta(days=30) / n
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, filled_quantity,"
            " average_price, fee_usdt, created_at) SELECT 'c' || i, 'v' || i,"
            " (ARRAY['BTC/USDT','ETH/USDT','SOL/USDT'])[1 + i %% 3], CASE WHEN (i / 3) %% 2 = 0 THEN 'BUY' ELSE 'SELL'"
            " END, 0.001, 'FILLED', 0.001, 50000, 0.05, %s + i * %s FROM generate_series(0, %s - 1) i",
            (end - timedelta(days=30), step, n),
        )
        conn.execute(
            "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,"
            " fee_usdt, realized_pnl_usdt, ts) SELECT 'paper', 't' || client_order_id, client_order_id, symbol, side,"
            " 0.001, 50000 + (random() - 0.5) * 500, 0.05, 'USDT', 0.05,"
            " CASE WHEN side = 'SELL' THEN (random() - 0.48) * 2 ELSE 0 END, created_at FROM orders"
        )
        conn.execute(
            "INSERT INTO balances (asset, free, locked) VALUES ('USDT', 10000, 0), ('BTC', 0.001, 0)"
        )
        conn.execute(
            "INSERT INTO positions (symbol, quantity, average_cost, cost) VALUES ('BTC/USDT', 0.001, 50000, 50)"
        )
        conn.execute("ANALYZE")


def _start_ops_api(nats_url: str, db_url: str, tmp: Path):
    """ops_api on a port this benchmark chooses (so it knows the URL), ready once /health answers."""
    import os
    import subprocess
    import sys

    import httpx

    from bnml.embedded import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env.update(
        NATS_URL=nats_url,
        DATABASE_URL=db_url,
        BNML_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
        BNML_OPS_API__HOST="127.0.0.1",
        BNML_OPS_API__PORT=str(port),
        BNML_OPS_API__METRICS_PORT="0",
        BNML_OPS_API__VIEWER_TOKEN=TOKEN,
        BNML_OPS_API__OPERATOR_TOKEN="bench-operator-token-0123456789",
        BNML_STORAGE__BACKUP__ENABLED="false",
        BNML_STORAGE__ARTIFACTS_DIR=str(tmp / "artifacts"),
        BNML_MONITORING__DOD__AUTO_DAILY="false",
    )
    log = open(tmp / "ops_api.log", "w+")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.ops_api"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, log, url
        if proc.poll() is not None:
            raise RuntimeError(f"ops_api exited: {(tmp / 'ops_api.log').read_text()[-2000:]}")
        time.sleep(0.05)  # a poll's interval
    proc.kill()
    raise TimeoutError("ops_api did not start")


async def _page_load_ms(base: str, runs: int) -> list[float]:
    import httpx

    out = []
    limits = httpx.Limits(max_connections=6)  # what a browser opens per host
    async with httpx.AsyncClient(
        base_url=base, timeout=30, limits=limits, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:
        for _ in range(runs):
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(c.get(p) for p in CONSOLE_REQUESTS))
            out.append((time.perf_counter() - t0) * 1000)
            assert all(r.status_code == 200 for r in rs), [
                (p, r.status_code) for p, r in zip(CONSOLE_REQUESTS, rs, strict=True)
            ]
    return out


async def _sse_latency_ms(base: str, nats_url: str, n: int) -> list[float]:
    import httpx
    import nats

    from libs.common.contracts import Fill
    from libs.common.contracts.base import utcnow

    nc = await nats.connect(nats_url)
    out = []
    try:
        async with httpx.AsyncClient(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as c:
            async with c.stream("GET", "/events") as r:
                lines = r.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                for i in range(n):
                    f = Fill(
                        ts=utcnow(),
                        client_order_id=f"sse-{i}",
                        trade_id=f"sse-{i}",
                        symbol="BTC/USDT",
                        side="BUY",
                        quantity=1,
                        price=50000,
                        fee=0,
                    )
                    t0 = time.perf_counter()
                    await nc.publish("exec.fill.BTCUSDT", f.model_dump_json().encode())
                    await nc.flush()
                    async for line in lines:
                        if line.startswith("data:") and f'"trade_id":"sse-{i}"' in line:
                            break
                    out.append((time.perf_counter() - t0) * 1000)
    finally:
        await nc.close()
    return out


async def _browser_load_ms(base: str, runs: int) -> list[float] | None:
    import shutil

    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.async_api import async_playwright

    out = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            for _ in range(runs):
                ctx = await browser.new_context()
                page = await ctx.new_page()
                await page.add_init_script(f"sessionStorage.setItem('bnml.console.token', '{TOKEN}')")
                t0 = time.perf_counter()
                await page.goto(base + "/")
                await page.locator("#trades tbody tr").nth(29).wait_for()  # the last table the page fills
                out.append((time.perf_counter() - t0) * 1000)
                await ctx.close()
        finally:
            await browser.close()
    return out


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def run_console(quick: bool = False) -> dict[str, float]:
    from bench.stack import embedded_stack

    with embedded_stack("bnml-bench-console-") as st:
        db = st.fresh_db("console")
        write_fills(db, 10_000, datetime.now(UTC))
        proc, log, base = _start_ops_api(st.ns.url, db, st.tmp)
        try:
            loads = asyncio.run(_page_load_ms(base, 5 if quick else 20))
            sse = asyncio.run(_sse_latency_ms(base, st.ns.url, 50 if quick else 300))
            browser = asyncio.run(_browser_load_ms(base, 2 if quick else 5))
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    figures = {
        "console_api_load_10k_fills_p50_ms": _pct(loads, 0.5),
        "console_api_load_10k_fills_p99_ms": _pct(loads, 0.99),
        "sse_fill_to_client_p50_ms": _pct(sse, 0.5),
        "sse_fill_to_client_p99_ms": _pct(sse, 0.99),
    }
    if browser:
        figures["console_browser_load_10k_fills_p50_ms"] = _pct(browser, 0.5)
    return figures


if __name__ == "__main__":
    import sys

    print(run_console("--quick" in sys.argv) if "console" in sys.argv else run("--quick" in sys.argv))

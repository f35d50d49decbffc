"""ops_api benchmark: `dod_report_7d_s`, the DoD v1 report over 7 days of generated history.

History at a realistic rate, written the way the recorder writes it: heartbeats every 2 s from 5 services
(1.5 M heartbeats, kept as per-minute coverage rows), 2,000 orders and fills a day, market-data
transitions, breaker events, refusals per minute, alert deliveries, a backup a day. The figure is the
wall time of `generate_dod_report --days 7` minus process start: compute from Postgres, store the 7 reports
in Postgres, write the 7 JSON files and the summary.
"""

from __future__ import annotations

import asyncio
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
            conn.execute("INSERT INTO heartbeat_minutes (service, minute, beats, ok_beats, last_ts)"
                         " SELECT %s, m, 30, 30, m + interval '58 seconds' FROM generate_series(%s::timestamptz,"
                         " %s::timestamptz - interval '1 minute', interval '1 minute') m", (svc, start, end))
        n_orders = orders_per_day * days
        step = timedelta(days=days) / n_orders
        conn.execute(
            "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, filled_quantity,"
            " average_price, fee_usdt, tick_ts, created_at)"
            " SELECT 'c' || i, 'v' || i, (ARRAY['BTC/USDT','ETH/USDT','SOL/USDT'])[1 + i %% 3],"
            " CASE WHEN i %% 2 = 0 THEN 'BUY' ELSE 'SELL' END, 0.001,"
            " CASE WHEN i %% 97 = 0 THEN 'REJECTED' ELSE 'FILLED' END, 0.001, 50000, 0.05,"
            " %s + i * %s - (5 + (i %% 40)) * interval '1 millisecond', %s + i * %s"
            " FROM generate_series(0, %s - 1) i", (start, step, start, step, n_orders))
        conn.execute(
            "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,"
            " realized_pnl_usdt, ts) SELECT 'paper', 't' || client_order_id, client_order_id, symbol, side, 0.001,"
            " 50000, 0.05, 'USDT', CASE WHEN side = 'SELL' THEN (random() - 0.48) * 2 ELSE 0 END,"
            " created_at + interval '3 milliseconds' FROM orders WHERE status = 'FILLED'")
        conn.execute(
            "INSERT INTO market_status_events (symbol, status, age_s, ts) SELECT s, CASE WHEN h %% 2 = 0 THEN 'stale'"
            " ELSE 'fresh' END, 10, %s + h * interval '1 hour' + (h %% 2) * interval '20 seconds'"
            " FROM generate_series(0, %s * 24 - 1) h, unnest(ARRAY['BTC/USDT','ETH/USDT','SOL/USDT']) s",
            (start, days))
        conn.execute(
            "INSERT INTO breaker_log (event_id, kind, breaker, effect, reason, ts) SELECT 'b' || i,"
            " CASE WHEN i %% 2 = 0 THEN 'tripped' ELSE 'cleared' END, (ARRAY['volatility','drift','spread'])[1 + i %% 3],"
            " 'REDUCING', 'generated', %s + i * interval '17 minutes' FROM generate_series(0, %s * 84) i",
            (start, days))
        conn.execute(
            "INSERT INTO refusal_minutes (minute, reason, n) SELECT m, r, 1 + (extract(minute FROM m)::int %% 5)"
            " FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', interval '1 minute') m,"
            " unnest(ARRAY['max_notional','stale_market_data','breaker:volatility']) r", (start, end))
        conn.execute(
            "INSERT INTO alert_deliveries (alert_id, channel, ok, ts) SELECT 'a' || i, 'webhook', i %% 200 <> 0,"
            " %s + i * interval '7 minutes' FROM generate_series(0, %s * 205) i", (start, days))
        conn.execute(
            "INSERT INTO backups (started_at, finished_at, ok, path) SELECT %s + d * interval '1 day' + interval '1 hour',"
            " %s + d * interval '1 day' + interval '1 hour 2 seconds', true, 'x' FROM generate_series(0, %s - 1) d",
            (start, start, days))
        conn.execute("ANALYZE")
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("heartbeat_minutes", "orders", "fills", "market_status_events", "refusal_minutes")}
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
                result = asyncio.run(generate(settings, pg.url, 7, last_day=(end - timedelta(days=1)).date(),
                                              out_dir=Path(tmp) / "dod", progress=False))
                times.append(time.perf_counter() - t0)
            assert len(result.reports) == 7 and all(r.status != "no_data" for r in result.reports)
        finally:
            pg.stop("immediate")
    return {"dod_report_7d_s": sorted(times)[len(times) // 2]}


if __name__ == "__main__":
    print(run())

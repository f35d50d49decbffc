"""Execution: verdict published -> journaled paper fill latency, and the sustained verdict rate.

Servers (embedded NATS, embedded Postgres with fsync on: journal commits stay durable) and the real
`python -m services.execution` process are started here. This process publishes ticks and verdicts on the
bus like risk would, and listens for the fills execution publishes after the journal commit.
- latency: verdicts at a steady `rate` per second; latency = fill received - verdict published (this
  process's clock on both ends), so it includes the journal insert, the paper match, the fill transaction
  and the fill's publication.
- sustained: a burst of verdicts published as fast as possible; rate = verdicts / time until the last
  fill is journaled.
- journal commit: one durable one-row insert from an async psycopg connection (as execution makes them),
  back to back, after 20 ms idle and after 200 ms idle (`journal_commit_*`): what each of an order's two
  commits costs when the client and its Postgres backend are busy, and when both have to be woken (200 ms is
  the gap between orders at risk's order-rate cap).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import yaml
from prometheus_client import CollectorRegistry

from bench.stack import embedded_stack
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import Fill, Heartbeat, RiskVerdict, Tick, utcnow
from libs.common.db import migrate
from libs.common.metrics import ServiceMetrics
from services.execution.core import client_order_id

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = "BTC/USDT"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))]


def _config(path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "bot.yaml").read_text())
    cfg["symbols"] = [SYMBOL]
    cfg["execution"].update({"starting_balances": {"USDT": 1_000_000_000}})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _verdict(ttl_s: float = 60.0) -> RiskVerdict:
    now = utcnow()
    return RiskVerdict(
        ts=now,
        signal_id="bench-signal-" + now.strftime("%f"),
        symbol=SYMBOL,
        side="BUY",
        approved=True,
        quantity=Decimal("0.001"),
        price_limit=Decimal("60000"),
        expires_at=now + timedelta(seconds=ttl_s),
        tick_ts=now,
    )


async def _measure(nats_url: str, db_url: str, seconds: float, rate: int, burst: int) -> dict[str, float]:
    bus = Bus(nats_url, "bench", ServiceMetrics("bench", registry=CollectorRegistry()))
    await bus.connect(retry_initial=False)
    await bus.ensure_streams()
    arrived: dict[str, float] = {}

    waiting: set[str] = set()
    all_in = asyncio.Event()

    async def on_fill(f: Fill, subject: str) -> None:
        arrived[f.client_order_id] = time.perf_counter()
        waiting.discard(f.client_order_id)
        if not waiting:
            all_in.set()

    await bus.subscribe(subjects.ALL_FILLS, Fill, on_fill)
    stop = asyncio.Event()

    async def ticks() -> None:
        while not stop.is_set():
            tick = Tick(
                ts=utcnow(),
                symbol=SYMBOL,
                bid=Decimal("50000"),
                ask=Decimal("50001"),
                last=Decimal("50000"),
                volume=Decimal("5"),
            )
            for subject in (subjects.tick(SYMBOL), subjects.last(SYMBOL)):  # as market_data sends it
                await bus.publish(subject, tick)
            await asyncio.sleep(0.5)

    up = asyncio.Event()

    async def on_heartbeat(hb: Heartbeat, subject: str) -> None:
        up.set()

    await bus.subscribe(subjects.heartbeat("execution"), Heartbeat, on_heartbeat)
    await asyncio.wait_for(up.wait(), 60)  # execution is consuming: ticks now reach it
    tick_task = asyncio.create_task(ticks())
    await asyncio.sleep(0.2)
    try:
        # warm-up: the first fill proves the path is up
        w = _verdict()
        await bus.publish(subjects.verdict(SYMBOL), w)
        deadline = time.monotonic() + 60
        while client_order_id(w.id) not in arrived:
            if time.monotonic() > deadline:
                raise RuntimeError("execution produced no fill in 60 s")
            await asyncio.sleep(0.05)
        # steady rate
        sent: dict[str, float] = {}
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            v = _verdict()
            sent[client_order_id(v.id)] = time.perf_counter()
            waiting.add(client_order_id(v.id))
            all_in.clear()
            await bus.publish(subjects.verdict(SYMBOL), v)
        if waiting:
            try:
                await asyncio.wait_for(all_in.wait(), 30)
            except TimeoutError:
                pass
        lat = [(arrived[c] - t) * 1000 for c, t in sent.items() if c in arrived]
        # sustained: a burst, as fast as the bus takes it
        with psycopg.connect(db_url, autocommit=True) as conn:
            before = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
            t0 = time.perf_counter()
            await asyncio.gather(*(bus.publish(subjects.verdict(SYMBOL), _verdict()) for _ in range(burst)))
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM fills").fetchone()[0] < before + burst:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - t0
            done = conn.execute("SELECT count(*) FROM fills").fetchone()[0] - before
    finally:
        stop.set()
        await tick_task
        await bus.drain()
    return {
        "verdict_to_fill_p50_ms": statistics.median(lat) if lat else float("nan"),
        "verdict_to_fill_p99_ms": percentile(lat, 99),
        "verdict_to_fill_lost": float(len(sent) - len(lat)),
        "execution_sustained_verdicts_per_s": done / elapsed if elapsed > 0 else float("nan"),
    }


async def _commit_round_trips(db_url: str, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE bench_commit_probe (id bigserial PRIMARY KEY, v integer NOT NULL)")
        # 20 ms: a busy moment; 200 ms: the gap between two orders at risk's throttle (at most 4.9 orders/s)
        for label, idle_s, count in (
            ("b2b", 0.0, n),
            ("after_idle", 0.02, n),
            ("after_idle_200ms", 0.2, n // 3),
        ):
            lat: list[float] = []
            for i in range(count + 20):  # the first 20 warm up (prepared statement, caches)
                if idle_s:
                    await asyncio.sleep(idle_s)  # the process sleeps, as execution does between orders
                t0 = time.perf_counter()
                await conn.execute("INSERT INTO bench_commit_probe (v) VALUES (%s)", (i,))
                if i >= 20:
                    lat.append((time.perf_counter() - t0) * 1000)
            out[f"journal_commit_{label}_p50_ms"] = statistics.median(lat)
            out[f"journal_commit_{label}_p99_ms"] = percentile(lat, 99)
        await conn.execute("DROP TABLE bench_commit_probe")
    return out


def run(quick: bool = False) -> dict[str, float]:
    seconds, rate, burst = (3.0, 20, 300) if quick else (15.0, 20, 2000)
    with embedded_stack("bnml-bench-exec-") as st:  # fsync on: durable journal commits
        tmp, ns, pg = st.tmp, st.ns, st.pg
        proc = None
        try:
            migrate(pg.url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
            env.update(
                NATS_URL=ns.url,
                DATABASE_URL=pg.url,
                BNML_CONFIG=str(_config(tmp / "bench.yaml")),
                BNML_LOG_FORMAT="json",
                BNML_LOG_LEVEL="WARNING",
                BNML_EXECUTION__METRICS_PORT="0",
            )
            with open(tmp / "execution.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "services.execution"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                out = asyncio.run(_measure(ns.url, pg.url, seconds, rate, burst))
                out.update(asyncio.run(_commit_round_trips(pg.url, 50 if quick else 300)))
                return out
            except RuntimeError as exc:
                raise RuntimeError(
                    f"{exc}; execution log: {(tmp / 'execution.log').read_text()[-2000:]}"
                ) from None
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()

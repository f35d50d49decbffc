"""Risk's decision latency per signal: the pure core alone (microseconds) and through the bus
(signal published -> verdict received, with the real `python -m services.risk` on embedded NATS + Postgres).

Both use limits wide enough that every decision takes the full path (breakers, gates, sizing, exchange
filters, throttle bookkeeping) rather than a throttle refusal; the signals alternate BUY/SELL on two
symbols with fresh ticks and heartbeats, as market_data and execution would give.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000")}
WIDE = {
    "max_orders_per_10s": 49,
    "max_orders_per_10s_per_symbol": 49,
    "order_loop_trip_per_10s": 1000,
    "max_exposure_per_symbol_usdt": 10_000_000,
    "max_total_exposure_usdt": 10_000_000,
    "starting_equity_usdt": 10_000_000,
    "max_notional_usdt": 100,
    "duplicate_signal_window_s": 60,
}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))]


# -- core ------------------------------------------------------------------------------------------
def core(n: int) -> dict[str, float]:
    from libs.common.contracts import Fill, Signal
    from libs.common.markets import load_markets
    from libs.common.settings import RiskSettings
    from services.risk.core import RiskEngine

    t = datetime(2026, 1, 7, 12, tzinfo=UTC)
    cfg = RiskSettings(**WIDE, stale_after_s=10, heartbeat_timeout_s=10)
    e = RiskEngine(cfg, load_markets(), list(PRICES), t)
    e.account_known = True
    e.set_kill_switch(False, True, t)
    for sym, px in PRICES.items():  # something to sell
        e.on_fill(
            Fill(
                ts=t,
                client_order_id=f"b-{sym}",
                trade_id=f"b-{sym}",
                symbol=sym,
                side="BUY",
                quantity=Decimal("100") / px * 1000,
                price=px,
                fee=Decimal("0"),
            ),
            t,
        )
    syms = list(PRICES)
    signals = [
        Signal(
            ts=t + timedelta(milliseconds=250 * (i + 1)),
            symbol=syms[i % 2],
            side="BUY" if (i // 2) % 2 == 0 else "SELL",
            probability=0.6,
            model_version="bench",
            price=PRICES[syms[i % 2]],
        )
        for i in range(n)
    ]
    lat: list[float] = []
    approved = 0
    for sig in signals:
        now = sig.ts  # 4 decisions/s: the throttle never binds
        for s in ("market_data", "execution"):
            e.on_heartbeat(s, now)
        e.on_tick(sig.symbol, PRICES[sig.symbol], now, now)
        t0 = time.perf_counter_ns()
        d = e.decide(sig, now)
        lat.append((time.perf_counter_ns() - t0) / 1000)
        approved += d.verdict.approved
        if d.verdict.approved:  # execution's part: the market order fills at once and risk hears of it
            v, coid = d.verdict, f"c-{d.verdict.id}"
            e.on_order(v.id, coid, "FILLED", v.quantity, v.quantity)
            e.on_fill(
                Fill(
                    ts=now,
                    client_order_id=coid,
                    trade_id=coid,
                    symbol=v.symbol,
                    side=v.side,
                    quantity=v.quantity,
                    price=PRICES[v.symbol],
                    fee=Decimal("0"),
                ),
                now,
            )
    warm = lat[len(lat) // 10 :]  # drop the first 10 % (imports, caches)
    return {
        "risk_decision_p50_us": statistics.median(warm),
        "risk_decision_p99_us": percentile(warm, 99),
        "risk_decision_approved_share": approved / n,
    }


# -- through the bus -------------------------------------------------------------------------------
async def _bus_run(nats_url: str, rate: int, seconds: float) -> list[float]:
    from prometheus_client import CollectorRegistry

    from libs.common import subjects
    from libs.common.bus import Bus
    from libs.common.contracts import Fill, Heartbeat, RiskVerdict, Signal, Tick, utcnow
    from libs.common.metrics import ServiceMetrics

    bus = Bus(nats_url, "bench", ServiceMetrics("bench", registry=CollectorRegistry()))
    await bus.connect(retry_initial=False)
    await bus.ensure_streams()
    sent_at: dict[str, int] = {}
    lat: list[float] = []
    approved: list[bool] = []

    async def on_verdict(v: RiskVerdict, s: str) -> None:
        t0 = sent_at.pop(v.signal_id, None)
        if t0 is not None:
            lat.append((time.perf_counter_ns() - t0) / 1e6)
            approved.append(v.approved)

    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)

    async def feed() -> None:
        while True:
            now = utcnow()
            for svc in ("market_data", "execution"):
                await bus.publish(
                    subjects.heartbeat(svc), Heartbeat(ts=now, service=svc, instance="b", uptime_s=1)
                )
            for sym, px in PRICES.items():
                tick = Tick(ts=now, symbol=sym, bid=px, ask=px, last=px, volume=Decimal("1"))
                for subject in (subjects.tick(sym), subjects.last(sym)):  # as market_data sends it
                    await bus.publish(subject, tick)
            await asyncio.sleep(0.2)

    feeder = asyncio.create_task(feed())
    for i, (sym, px) in enumerate(PRICES.items()):
        await bus.publish(
            subjects.fill(sym),
            Fill(
                ts=utcnow(),
                client_order_id=f"bench-{i}",
                trade_id=f"bench-{i}",
                symbol=sym,
                side="BUY",
                quantity=Decimal("100") / px * 1000,
                price=px,
                fee=Decimal("0"),
            ),
        )
    syms = list(PRICES)
    # wait until risk approves (fresh data, heartbeats, fills applied)
    deadline = time.monotonic() + 60
    while True:
        sig = Signal(
            ts=utcnow(),
            symbol="BTC/USDT",
            side="BUY",
            probability=0.6,
            model_version="bench",
            price=PRICES["BTC/USDT"],
        )
        sent_at[sig.id] = time.perf_counter_ns()
        await bus.publish(subjects.signal(sig.symbol), sig)
        await asyncio.sleep(0.3)
        if approved and approved[-1]:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("risk never approved a warm-up signal")
    lat.clear()
    approved.clear()
    sent_at.clear()  # warm-up signals sent before risk subscribed are never answered
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sym = syms[i % 2]
        sig = Signal(
            ts=utcnow(),
            symbol=sym,
            side="BUY" if (i // 2) % 2 == 0 else "SELL",
            probability=0.6,
            model_version="bench",
            price=PRICES[sym],
        )
        sent_at[sig.id] = time.perf_counter_ns()
        await bus.publish(subjects.signal(sym), sig)
    end = time.monotonic() + 10
    while time.monotonic() < end:  # until every signal is answered (or 10 s)
        if not sent_at:
            break
        await asyncio.sleep(0.05)
    feeder.cancel()
    await bus.drain()
    return lat


def through_bus(tmp: Path, rate: int, seconds: float, ns, pg) -> dict[str, float]:
    """`ns`/`pg`: embedded NATS and Postgres, already started (risk migrates the schema itself)."""
    proc = None
    try:
        cfg = yaml.safe_load((ROOT / "configs" / "bot.yaml").read_text())
        cfg["symbols"] = list(PRICES)
        cfg["risk"].update(WIDE)
        config = tmp / "bench_risk.yaml"
        config.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
        env.update(
            NATS_URL=ns.url,
            DATABASE_URL=pg.url,
            BNML_CONFIG=str(config),
            BNML_LOG_FORMAT="json",
            BNML_LOG_LEVEL="WARNING",
            BNML_RISK__METRICS_PORT="0",
        )
        log = open(tmp / "risk.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.risk"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        lat = asyncio.run(_bus_run(ns.url, rate, seconds))
        if not lat:
            raise RuntimeError(f"no verdicts: {(tmp / 'risk.log').read_text()[-2000:]}")
        return {
            "risk_bus_decision_p50_ms": statistics.median(lat),
            "risk_bus_decision_p99_ms": percentile(lat, 99),
            "risk_bus_decisions": float(len(lat)),
        }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(quick: bool = False) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    from bnml.embedded import EmbeddedNats, EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="bnml-bench-risk-") as d, ThreadPoolExecutor(1) as pool:
        tmp = Path(d)
        pg_started = pool.submit(
            lambda: EmbeddedPostgres(tmp / "pg", fsync=False).start()
        )  # initdb meanwhile
        ns = EmbeddedNats(tmp / "nats").start()
        try:
            out = core(1_000 if quick else 20_000)
            pg = pg_started.result()
            try:
                out.update(through_bus(tmp, 50 if quick else 100, 1.0 if quick else 10.0, ns, pg))
            finally:
                pg.stop("immediate")
        finally:
            ns.stop()
    return out


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))

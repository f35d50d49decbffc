"""Scenarios 10-11: a signal storm stays under Binance's order limits and trips the order-loop breaker
(SEV-1); stale market data makes risk hold the symbol."""

from __future__ import annotations

import asyncio
import os
import signal
from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.contracts import Alert, BreakerTripped, RiskVerdict, Signal, Tick, utcnow
from tests.helpers import wait_until

pytestmark = pytest.mark.faults

BINANCE_ORDERS_PER_10S = 50


async def _last_price(bus, symbol: str) -> Decimal:
    seen: list[Tick] = []

    async def on_tick(t: Tick, subject: str) -> None:
        seen.append(t)

    sub = await bus.subscribe(subjects.tick(symbol), Tick, on_tick)
    await wait_until(lambda: seen, timeout=30, message=f"a tick for {symbol}")
    await sub.unsubscribe()
    return seen[-1].last


def _signal(symbol: str, price: Decimal, side: str = "BUY") -> Signal:
    now = utcnow()
    return Signal(
        ts=now,
        symbol=symbol,
        side=side,
        probability=0.9,
        expected_edge_bps=50,
        model_version="storm",
        price=price,
        tick_ts=now,
    )


async def _collect(bus, subject: str, model):
    out: list = []

    async def on(msg, subj: str) -> None:
        out.append(msg)

    await bus.subscribe(subject, model, on)
    return out


async def test_signal_storm_is_throttled_below_binance_limits_and_trips_sev1(services, bus):
    for name in ("risk", "execution", "market_data"):
        services.start(name)
    price = await _last_price(bus, "BTC/USDT")
    verdicts = await _collect(bus, subjects.ALL_VERDICTS, RiskVerdict)
    alerts = await _collect(bus, subjects.alert("SEV-1"), Alert)
    trips = await _collect(bus, subjects.breaker_tripped(), BreakerTripped)
    await asyncio.sleep(2)  # let risk see heartbeats and fresh data
    started = asyncio.get_running_loop().time()
    sent = 0
    while asyncio.get_running_loop().time() - started < 2.0:  # a few thousand signals per second
        for _ in range(200):
            await bus.publish(
                subjects.signal("BTC/USDT"), _signal("BTC/USDT", price, "BUY" if sent % 2 else "SELL")
            )
            sent += 1
        await asyncio.sleep(0.01)  # the storm's pace: bursts of 200, a few thousand per second
    await wait_until(lambda: alerts, timeout=20, message="a SEV-1 alert for the order loop")
    # still a fixed wait (a marker does not work here: not every signal of the storm gets its verdict seen
    # here, so "a verdict for each" never comes): let the last verdicts land before the approvals are counted
    await asyncio.sleep(1)
    approved = [v for v in verdicts if v.approved]
    assert sent >= 2000
    assert len(approved) <= BINANCE_ORDERS_PER_10S, f"{len(approved)} approvals in a storm"
    assert trips, "no breaker tripped"
    assert any(a.severity == "SEV-1" for a in alerts)


async def test_frozen_market_data_makes_risk_hold(services, bus):
    services.configure({"market_data": {"stale_after_s": 2}, "monitoring": {"heartbeat_timeout_s": 3}})
    procs = {name: services.start(name) for name in ("risk", "execution", "market_data")}
    price = await _last_price(bus, "ETH/USDT")
    verdicts = await _collect(bus, subjects.verdict("ETH/USDT"), RiskVerdict)
    os.kill(procs["market_data"].proc.pid, signal.SIGSTOP)  # prices freeze, heartbeats stop
    try:
        await asyncio.sleep(12)  # the freeze lasts past stale_after_s and heartbeat_timeout_s (the scenario)
        for _ in range(5):
            await bus.publish(subjects.signal("ETH/USDT"), _signal("ETH/USDT", price))
        await wait_until(lambda: len(verdicts) >= 5, timeout=20, message="risk's answers")
    finally:
        os.kill(procs["market_data"].proc.pid, signal.SIGCONT)
    assert not any(v.approved for v in verdicts)
    reasons = " ".join(r for v in verdicts for r in v.reasons).lower()
    assert "stale" in reasons or "heartbeat" in reasons, reasons

"""Scenarios 10-11: a signal storm stays under Binance's order limits and trips the order-loop breaker
(SEV-1); stale market data makes risk hold the symbol."""

from __future__ import annotations

import asyncio
import contextlib
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


async def _until_risk_approves(bus, price: Decimal, verdicts: list[RiskVerdict]) -> None:
    """Readiness for the storm: a probe BUY, sent again every half second, until risk approves one (it has
    the market's heartbeats and a fresh price); then the storm starts with risk able to approve."""
    probes: set[str] = set()
    deadline = asyncio.get_running_loop().time() + 30
    while not any(v.approved and v.signal_id in probes for v in verdicts):
        assert asyncio.get_running_loop().time() < deadline, "risk approved no probe in 30 s"
        probe = _signal("BTC/USDT", price, "BUY")
        probes.add(probe.id)
        await bus.publish(subjects.signal("BTC/USDT"), probe)
        with contextlib.suppress(AssertionError):  # no verdict for this probe in 5 s: the next one
            await wait_until(
                lambda p=probe: any(v.signal_id == p.id for v in verdicts), timeout=5, message="a probe"
            )
        if not any(v.approved and v.signal_id in probes for v in verdicts):
            await asyncio.sleep(0.5)  # a poll's interval: the next probe


async def _marker_verdict(bus, price: Decimal, verdicts: list[RiskVerdict]) -> None:
    """A marker signal's verdict seen (a new marker every 5 s: a core-NATS message dropped in the storm's
    wake is not waited for forever)."""
    for _ in range(6):
        marker = _signal("ETH/USDT", price, "SELL")
        await bus.publish(subjects.signal("ETH/USDT"), marker)
        with contextlib.suppress(AssertionError):  # wait_until's timeout: send a new marker
            await wait_until(
                lambda m=marker: any(v.signal_id == m.id for v in verdicts), timeout=5, message="a marker"
            )
            return
    raise AssertionError("no marker's verdict in 30 s")


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
    await _until_risk_approves(bus, price, verdicts)  # risk has seen heartbeats and a fresh price
    started = asyncio.get_running_loop().time()
    storm: set[str] = set()
    while asyncio.get_running_loop().time() - started < 2.0:  # a few thousand signals per second
        for _ in range(200):
            sig = _signal("BTC/USDT", price, "BUY" if len(storm) % 2 else "SELL")
            await bus.publish(subjects.signal("BTC/USDT"), sig)
            storm.add(sig.id)
        await asyncio.sleep(0.01)  # the storm's pace: bursts of 200, a few thousand per second
    await wait_until(lambda: alerts, timeout=20, message="a SEV-1 alert for the order loop")
    # risk decides signals one at a time in arrival order: once a marker sent after the storm has its
    # verdict, every verdict risk gave the storm has been published before it (those it gave at all)
    await _marker_verdict(bus, price, verdicts)
    approved = [v for v in verdicts if v.approved and v.signal_id in storm]
    sent = len(storm)
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

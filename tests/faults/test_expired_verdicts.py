"""Scenario 4: risk killed or hung — execution refuses every verdict once it expires; no order goes out."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from libs.common import subjects
from libs.common.contracts import Signal, utcnow
from tests.faults.support import EXECUTION_CONFIG, PRICE, make_verdict, query, scalar, ticking
from tests.helpers import wait_until
from tests.integration.risk_support import RISK_TEST_CONFIG, Feeder

pytestmark = pytest.mark.faults


async def test_verdicts_that_expired_while_execution_was_away_are_never_sent(services, bus, database_url):
    services.configure(EXECUTION_CONFIG)
    execution = services.start("execution")
    execution.stop()
    stale = [make_verdict(ttl_s=0.5) for _ in range(20)]
    for v in stale:
        await bus.publish(subjects.verdict(v.symbol), v)
    await asyncio.sleep(1.0)  # they expire while nobody consumes them
    async with ticking(bus):
        services.start("execution")
        fresh = make_verdict(ttl_s=30)
        await bus.publish(subjects.verdict(fresh.symbol), fresh)
        await wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM orders") >= 1,
            timeout=20,
            message="the fresh verdict's order",
        )
        await asyncio.sleep(1)
    ids = {r for (r,) in query(database_url, "SELECT verdict_id FROM orders")}
    assert ids == {fresh.id}, "an expired verdict became an order"


def _signal() -> Signal:
    return Signal(
        ts=utcnow(),
        symbol="BTC/USDT",
        side="BUY",
        probability=0.9,
        model_version="t",
        price=PRICE,
        tick_ts=utcnow(),
    )


async def test_hung_risk_lets_nothing_through_and_stale_signals_are_not_traded_after(
    services, bus, database_url
):
    services.configure(
        {
            **EXECUTION_CONFIG,
            "symbols": RISK_TEST_CONFIG["symbols"],
            "risk": {**RISK_TEST_CONFIG["risk"], "verdict_ttl_s": 1.0, "max_signal_age_s": 1.0},
        }
    )
    risk = services.start("risk")
    services.start("execution")
    async with Feeder(bus):
        # positive control: with risk alive, these same signals become orders
        async def traded() -> bool:
            await bus.publish(subjects.signal("BTC/USDT"), _signal())
            return scalar(database_url, "SELECT count(*) FROM orders") >= 1

        await wait_until(
            traded, timeout=30, interval=0.5, message="an order from a live risk (positive control)"
        )
        await asyncio.sleep(1.5)  # let the control's last verdicts land or expire
        before = scalar(database_url, "SELECT count(*) FROM orders")
        os.kill(risk.proc.pid, signal.SIGSTOP)  # hung: alive, answers nothing
        try:
            for _ in range(30):
                await bus.publish(subjects.signal("BTC/USDT"), _signal())
            await asyncio.sleep(3)
            assert scalar(database_url, "SELECT count(*) FROM orders") == before
        finally:
            os.kill(risk.proc.pid, signal.SIGCONT)
        await asyncio.sleep(3)
    # signals that waited 3 s in a hung risk are older than any verdict's life: none may become an order
    assert scalar(database_url, "SELECT count(*) FROM orders") == before, "a signal from the hang was traded"
    late = scalar(
        database_url, "SELECT count(*) FROM orders WHERE created_at - tick_ts > interval '2 seconds'"
    )
    assert late == 0, f"{late} orders journaled for signals that went stale while risk hung"

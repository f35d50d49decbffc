"""Scenario 4: risk killed or hung — execution refuses every verdict once it expires; no order goes out."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from libs.common import subjects
from libs.common.contracts import RiskVerdict, Signal, utcnow
from tests.helpers import verdicts_settled, wait_until
from tests.kit.execution import EXECUTION_CONFIG, PRICE, make_verdict, query, scalar, ticking
from tests.kit.risk import RISK_TEST_CONFIG, Feeder

pytestmark = pytest.mark.faults


async def test_verdicts_that_expired_while_execution_was_away_are_never_sent(services, bus, database_url):
    services.configure(EXECUTION_CONFIG)
    execution = services.start("execution")
    execution.stop()
    stale = [make_verdict(ttl_s=0.5) for _ in range(20)]
    for v in stale:
        await bus.publish(subjects.verdict(v.symbol), v)
    # they expire while nobody consumes them
    await wait_until(lambda: utcnow() > max(v.expires_at for v in stale), timeout=5, message="expired")
    async with ticking(bus):
        services.start("execution")
        fresh = make_verdict(ttl_s=30)
        await bus.publish(subjects.verdict(fresh.symbol), fresh)
        await wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM orders") >= 1,
            timeout=20,
            message="the fresh verdict's order",
        )
        # every verdict decided (the expired ones refused, acked) before we look
        await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the verdicts decided")
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
    asked: list[Signal] = []
    answered: set[str] = set()

    async def on_verdict(v: RiskVerdict, subject: str) -> None:
        answered.add(v.signal_id)

    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)

    async def ask() -> None:
        sig = _signal()
        asked.append(sig)
        await bus.publish(subjects.signal(sig.symbol), sig)

    async def all_decided() -> bool:
        """Risk answered every signal asked (its verdicts are out) and execution decided every verdict."""
        return all(s.id in answered for s in asked) and await verdicts_settled(bus)

    async with Feeder(bus):
        # positive control: with risk alive, these same signals become orders
        async def traded() -> bool:
            await ask()
            return scalar(database_url, "SELECT count(*) FROM orders") >= 1

        await wait_until(
            traded, timeout=30, interval=0.5, message="an order from a live risk (positive control)"
        )
        await wait_until(all_decided, timeout=20, message="the control's last verdicts decided")
        before = scalar(database_url, "SELECT count(*) FROM orders")
        os.kill(risk.proc.pid, signal.SIGSTOP)  # hung: alive, answers nothing
        try:
            for _ in range(30):
                await ask()
            await asyncio.sleep(3)  # the hang lasts: its signals grow older than any verdict's life
            assert scalar(database_url, "SELECT count(*) FROM orders") == before
        finally:
            os.kill(risk.proc.pid, signal.SIGCONT)
        # the resumed risk answers what it queued (stale_signal), and execution decides whatever came out
        await wait_until(all_decided, timeout=30, message="the hang's signals answered and decided")
    # signals that waited 3 s in a hung risk are older than any verdict's life: none may become an order
    assert scalar(database_url, "SELECT count(*) FROM orders") == before, "a signal from the hang was traded"
    late = scalar(
        database_url, "SELECT count(*) FROM orders WHERE created_at - tick_ts > interval '2 seconds'"
    )
    assert late == 0, f"{late} orders journaled for signals that went stale while risk hung"

"""Execution's verdict expiry on the test clock: a verdict whose TTL has run out on the runtime's clock when it
arrives is refused and never reaches the paper book, while one still inside its TTL is sent."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.contracts import RiskVerdict, Tick
from services.execution.shell import ExecutionService
from tests.helpers import publish_tick, wait_until
from tests.kit.execution import EXECUTION_CONFIG, PRICE, QTY, SYMBOL, query
from tests.kit.harness import Shell, in_process

pytestmark = pytest.mark.integration  # on this test's NATS and Postgres

TTL_S = 30.0


def verdict_at(shell: Shell[ExecutionService], n: int) -> RiskVerdict:
    """An approved BUY as risk would publish it now on the test clock, valid for TTL_S (epoch 0: no risk writer
    ever took the lock in this database, which paper accepts)."""
    now = shell.clock.now()
    return RiskVerdict(
        ts=now,
        signal_id=f"signal-{n:04d}",
        symbol=SYMBOL,
        side="BUY",
        approved=True,
        quantity=QTY,
        price_limit=PRICE * Decimal("1.01"),
        reasons=[],
        expires_at=now + timedelta(seconds=TTL_S),
        tick_ts=now,
        risk_epoch=0,
    )


async def test_a_verdict_past_its_ttl_on_the_clock_is_refused_and_a_fresh_one_is_sent(
    settings_for, bus, database_url
):
    settings = settings_for(EXECUTION_CONFIG)
    async with in_process(ExecutionService(), settings) as shell:

        def journaled() -> set[str]:
            return {r for (r,) in query(database_url, "SELECT verdict_id FROM orders")}

        def filled() -> set[
            str
        ]:  # through the whole path: journaled, gated again at the send, filled on paper
            sql = "SELECT verdict_id FROM orders WHERE status = 'FILLED'"
            return {r for (r,) in query(database_url, sql)}

        async def fresh_tick() -> None:  # the paper book fills against the newest price, stamped on the clock
            px = PRICE
            tick = Tick(ts=shell.clock.now(), symbol=SYMBOL, bid=px, ask=px, last=px, volume=Decimal("5"))
            await publish_tick(bus, tick)
            await wait_until(
                lambda: shell.app.tick_for(SYMBOL) == tick, timeout=30, message="execution has the tick"
            )

        def refused(reason: str) -> float:
            value = shell.rt.metrics.registry.get_sample_value(
                "bnml_execution_verdicts_refused_total", {"reason": reason}
            )
            return value or 0.0

        # positive control: made now, arriving a millisecond before its TTL runs out -> sent to the paper book
        await fresh_tick()
        inside = verdict_at(shell, 1)
        shell.advance(TTL_S - 0.001)
        await fresh_tick()
        await bus.publish(subjects.verdict(inside.symbol), inside)
        await wait_until(
            lambda: inside.id in filled(), timeout=30, message="the verdict inside its TTL filled"
        )

        # made now, arriving exactly when its TTL runs out on the test clock -> refused, nothing sent
        expired = verdict_at(shell, 2)
        shell.advance(TTL_S)
        await fresh_tick()
        await bus.publish(subjects.verdict(expired.symbol), expired)
        # barrier: a fresh verdict behind it on the same stream; once it is sent, the expired one was handled
        behind = verdict_at(shell, 3)
        await bus.publish(subjects.verdict(behind.symbol), behind)
        await wait_until(lambda: behind.id in filled(), timeout=30, message="the verdict behind it filled")
        await wait_until(
            lambda: refused("verdict_expired") == 1.0, timeout=30, message="the expired verdict refused"
        )
        assert expired.id not in journaled(), "an expired verdict became an order"

"""Scenario 8: two execution instances — only one sends; the other takes over when it dies."""

from __future__ import annotations

import asyncio

import pytest

from libs.common import subjects
from tests.faults.support import (
    EXECUTION_CONFIG,
    assert_one_order_per_verdict,
    make_verdict,
    orders_by_verdict,
    ticking,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.faults


async def test_two_execution_instances_only_one_sends(services, bus, database_url):
    services.configure(EXECUTION_CONFIG)
    first = services.start("execution")
    second = services.start("execution")
    published: list[str] = []
    async with ticking(bus):
        for i in range(40):
            v = make_verdict("BUY" if i % 2 == 0 else "SELL")
            await bus.publish(subjects.verdict(v.symbol), v)
            published.append(v.id)
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(orders_by_verdict(database_url)) >= len(published), timeout=30,
                         message="all verdicts journaled")
        assert_one_order_per_verdict(database_url, published)
        # the active one dies; the standby must take over and keep the one-order rule
        active = first if '"writer lock acquired"' in first.logs() or "lock" not in second.logs() else second
        active.kill()
        more: list[str] = []
        for i in range(20):
            v = make_verdict("BUY" if i % 2 == 0 else "SELL")
            await bus.publish(subjects.verdict(v.symbol), v)
            more.append(v.id)
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(orders_by_verdict(database_url)) >= len(published) + len(more), timeout=60,
                         message="the standby took over")
    assert_one_order_per_verdict(database_url, published + more)

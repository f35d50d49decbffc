"""Scenarios 1-3: NATS restarted, Postgres restarted, execution SIGKILLed mid-flow.

The test plays risk: it publishes approved verdicts (alternating BUY/SELL so paper balances never run
out) at a steady rate, through the fault, retrying each with its own id until JetStream accepts it.
Every verdict JetStream accepted must end as exactly one journaled order; nothing is filled twice.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from libs.common import subjects
from tests.faults.support import (
    EXECUTION_CONFIG,
    assert_one_order_per_verdict,
    make_verdict,
    orders_by_verdict,
    publish_with_retry,
    ticking,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.faults


async def _publish_stream(bus, n: int, every_s: float, out: list[str], fault_at: int, fault) -> None:
    for i in range(n):
        if i == fault_at:
            await fault()
        v = make_verdict("BUY" if i % 2 == 0 else "SELL", ttl_s=120)
        await publish_with_retry(bus, subjects.verdict(v.symbol), v)
        out.append(v.id)
        await asyncio.sleep(every_s)


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(own_services, own_nats, own_postgres, bus_own):
    own_services.configure(EXECUTION_CONFIG)
    own_services.start("execution")
    published: list[str] = []

    async def restart_nats() -> None:
        await asyncio.to_thread(own_nats.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_nats.start)

    async with ticking(bus_own):
        await _publish_stream(bus_own, 120, 0.02, published, fault_at=60, fault=restart_nats)
        await wait_until(lambda: len(orders_by_verdict(own_postgres.url)) >= len(published), timeout=60,
                         message="every published verdict journaled")
    assert_one_order_per_verdict(own_postgres.url, published)


async def test_postgres_restart_mid_stream_sends_nothing_unjournaled_then_resumes(own_services, own_postgres, bus_own):
    own_services.configure(EXECUTION_CONFIG)
    execution = own_services.start("execution")
    published: list[str] = []

    async def crash_postgres() -> None:
        await asyncio.to_thread(own_postgres.stop, "immediate")
        await asyncio.sleep(2.0)
        await asyncio.to_thread(own_postgres.start)

    async with ticking(bus_own):
        await _publish_stream(bus_own, 80, 0.02, published, fault_at=40, fault=crash_postgres)
        if not execution.alive:  # fail closed is allowed: the supervisor (compose, launcher) restarts it
            own_services.start("execution")
        await wait_until(lambda: len(orders_by_verdict(own_postgres.url)) >= len(published), timeout=90,
                         message="every published verdict journaled after Postgres came back")
    assert_one_order_per_verdict(own_postgres.url, published)


async def test_execution_sigkilled_mid_flow_reconciles_to_one_order_per_verdict(own_services, own_postgres, bus_own):
    own_services.configure(EXECUTION_CONFIG)
    proc = own_services.start("execution")
    published: list[str] = []
    rng = random.Random(7)

    async with ticking(bus_own):
        for _round in range(4):
            batch: list[str] = []
            task = asyncio.create_task(_publish_stream(bus_own, 30, 0.005, batch, fault_at=-1, fault=None))
            await asyncio.sleep(rng.uniform(0.02, 0.15))
            proc.kill()  # SIGKILL somewhere between journal, send and acknowledgement
            await task
            published += batch
            proc = own_services.start("execution")
        await wait_until(lambda: len(orders_by_verdict(own_postgres.url)) >= len(published), timeout=60,
                         message="every verdict journaled after the restarts")
        await asyncio.sleep(2)
    assert_one_order_per_verdict(own_postgres.url, published)
    from tests.faults.support import query

    stuck = query(own_postgres.url, "SELECT client_order_id, status FROM orders"
                                    " WHERE status IN ('SUBMITTED', 'UNKNOWN')")
    assert not stuck, f"orders left unresolved after restart: {stuck[:5]}"

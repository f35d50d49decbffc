"""Fail closed on the database: risk refuses every verdict while Postgres is unreachable and approves again
once it is back (its own Postgres here, so the test can stop it)."""

from __future__ import annotations

import asyncio

import pytest

from bnml.embedded import EmbeddedPostgres
from tests.helpers import ServiceFactory, wait_heartbeat
from tests.kit.risk import RISK_TEST_CONFIG, Collector, Feeder

pytestmark = pytest.mark.integration


async def test_unreachable_database_refuses_every_verdict_until_it_is_back(tmp_path, nats_url, bus):
    pg = await asyncio.to_thread(lambda: EmbeddedPostgres(tmp_path / "pg", fsync=False).start())
    services = ServiceFactory(tmp_path, nats_url, pg.url)
    try:
        services.configure(RISK_TEST_CONFIG)
        risk = services.start("risk")
        seen = await Collector().attach(bus)
        async with Feeder(bus):
            await seen.ask_until(bus, lambda v: v.approved)
            await asyncio.to_thread(pg.stop, "immediate")
            down = await seen.ask_until(bus, lambda v: "database_unavailable" in v.reasons)
            assert not down.approved
            hb = await wait_heartbeat(bus, "risk")
            assert hb.status != "ok" and risk.alive
            await asyncio.to_thread(pg.start)
            back = await seen.ask_until(bus, lambda v: v.approved, timeout=40)
            assert back.quantity > 0
    finally:
        services.stop_all()
        await asyncio.to_thread(pg.stop, "immediate")

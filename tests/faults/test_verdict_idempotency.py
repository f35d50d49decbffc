"""Scenario 5: a verdict redelivered, republished, and replayed after the duplicate window: one order."""

from __future__ import annotations

import pytest

from libs.common import subjects
from tests.helpers import tick_barrier, verdicts_settled, wait_until
from tests.kit.execution import EXECUTION_CONFIG, make_verdict, orders_by_verdict, scalar, ticking

pytestmark = pytest.mark.faults


async def test_same_verdict_many_ways_gives_one_order(services, bus, database_url):
    services.configure(EXECUTION_CONFIG)
    execution = services.start("execution")
    async with ticking(bus):
        await tick_barrier(bus, "execution")  # a tick is execution's newest before the verdict
        v = make_verdict()
        subject = subjects.verdict(v.symbol)
        payload = v.model_dump_json().encode()
        # republished inside the duplicate window: JetStream drops it
        assert await bus.publish(subject, v) is True
        assert await bus.publish(subject, v) is False
        # replayed as if after the duplicate window (a new Nats-Msg-Id): the journal must stop it
        await bus.publish_raw(subject, payload, msg_id="replay-1")
        await bus.publish_raw(subject, payload, msg_id="replay-2")
        await wait_until(
            lambda: orders_by_verdict(database_url).get(v.id) == 1,
            timeout=20,
            message="the order for the verdict",
        )
        # redelivered after a restart of execution (its consumer starts from where it acked)
        execution.stop()
        await bus.publish_raw(subject, payload, msg_id="replay-3")
        services.start("execution")
        # the redelivery decided (refused by the journal, acked) before we count
        await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the redelivered verdict decided")
    assert orders_by_verdict(database_url) == {v.id: 1}
    assert scalar(database_url, "SELECT count(DISTINCT trade_id) FROM fills") == scalar(
        database_url, "SELECT count(*) FROM fills"
    )
    assert scalar(database_url, "SELECT coalesce(sum(quantity), 0) FROM fills") <= v.quantity

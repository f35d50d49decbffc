"""Scenario 8: two execution instances — only one sends; the other takes over when it dies.

Which instance is the writer is read from their heartbeats (instance id and detail), never from log
text; sends are counted where they happen (the paper exchange's own record carries the sending instance).
"""

from __future__ import annotations

import asyncio

import pytest

from libs.common import subjects
from libs.common.contracts import Heartbeat
from tests.helpers import wait_until
from tests.kit.execution import (
    EXECUTION_CONFIG,
    assert_one_order_per_verdict,
    make_verdict,
    orders_by_verdict,
    query,
    ticking,
)

pytestmark = pytest.mark.faults


class Roles:
    """Each execution instance's latest heartbeat detail: "writer (paper)" or its standby reason."""

    def __init__(self) -> None:
        self.detail: dict[str, str] = {}

    async def on(self, hb: Heartbeat, subject: str) -> None:
        self.detail[hb.instance] = hb.detail

    def writers(self) -> list[str]:
        return [i for i, d in self.detail.items() if d.startswith("writer")]

    def standbys(self) -> list[str]:
        return [i for i, d in self.detail.items() if d.startswith("standby")]


async def _publish(bus, n: int) -> list[str]:
    out = []
    for i in range(n):
        v = make_verdict("BUY" if i % 2 == 0 else "SELL")
        await bus.publish(subjects.verdict(v.symbol), v)
        out.append(v.id)
        await asyncio.sleep(0.01)  # a stream of verdicts, not one burst
    return out


def _senders(database_url: str) -> dict[str, int]:
    return dict(query(database_url, "SELECT instance, count(*) FROM paper_requests GROUP BY instance"))


async def test_two_execution_instances_only_one_sends_and_the_standby_takes_over(services, bus, database_url):
    services.configure({**EXECUTION_CONFIG, "monitoring": {"heartbeat_interval_s": 0.2}})
    roles = Roles()
    await bus.subscribe(subjects.heartbeat("execution"), Heartbeat, roles.on)
    first = services.start("execution")
    await wait_until(
        lambda: len(roles.writers()) == 1, timeout=20, message="the first instance is the writer"
    )
    (writer,) = roles.writers()
    services.start("execution")
    await wait_until(lambda: len(roles.standbys()) == 1, timeout=20, message="the second instance stands by")
    (standby,) = roles.standbys()
    assert standby != writer
    async with ticking(bus):
        published = await _publish(bus, 40)
        await wait_until(
            lambda: len(orders_by_verdict(database_url)) >= len(published),
            timeout=30,
            message="all verdicts journaled",
        )
        assert_one_order_per_verdict(database_url, published)
        before = _senders(database_url)
        assert before.get(writer, 0) > 0, f"the writer sent nothing: {before}"
        assert before.get(standby, 0) == 0, f"the standby sent before it took over: {before}"
        # the writer dies; the standby must take over (its heartbeat says so) and keep the one-order rule
        first.kill()
        await wait_until(
            lambda: roles.detail.get(standby, "").startswith("writer"),
            timeout=30,
            message="the standby took over the writer lock",
        )
        more = await _publish(bus, 20)
        await wait_until(
            lambda: len(orders_by_verdict(database_url)) >= len(published) + len(more),
            timeout=60,
            message="the new writer journaled the later verdicts",
        )
    assert_one_order_per_verdict(database_url, published + more)
    after = _senders(database_url)
    assert after.get(standby, 0) > 0, f"the new writer sent nothing: {after}"
    assert after.get(writer, 0) == before[writer], f"the dead writer is still sending: {after}"

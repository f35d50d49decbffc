"""Scenarios 6-7: the kill switch wins every race, including against a service cut off from NATS."""

from __future__ import annotations

import asyncio
import random

import pytest

from libs.common import subjects
from services.execution.core import client_order_id
from tests.faults.proxy import TcpProxy
from tests.helpers import verdicts_settled, wait_heartbeat, wait_until
from tests.kit.execution import (
    EXECUTION_CONFIG,
    Acks,
    kill_switch,
    make_verdict,
    query,
    scalar,
    ticking,
)

pytestmark = pytest.mark.faults

ROUNDS = 1000


async def test_kill_switch_engaged_while_orders_in_flight_1000_times(services, bus, database_url):
    services.configure(EXECUTION_CONFIG)
    services.start("execution")
    acks = await Acks().attach(bus)
    rng = random.Random(2026)
    windows = []  # (engage acknowledged at, next release published at): no send may fall inside
    async with ticking(bus, every_s=0.05):
        cmd = await kill_switch(bus, "release")
        await acks.wait(cmd.id, ("execution",))
        for i in range(ROUNDS):
            in_flight = [
                asyncio.create_task(
                    bus.publish(subjects.verdict("BTC/USDT"), make_verdict("BUY" if (i + k) % 2 else "SELL"))
                )
                for k in range(rng.randint(1, 4))
            ]
            await asyncio.sleep(
                rng.uniform(0, 0.004)
            )  # the race: the engage lands at a random point among them
            engage = await kill_switch(bus, "engage", f"race {i}")
            ack = (await acks.wait(engage.id, ("execution",)))["execution"]
            assert ack.engaged and ack.open_orders == 0, ack
            await asyncio.gather(*in_flight)
            await asyncio.sleep(rng.uniform(0, 0.004))  # verdicts still arriving while engaged
            release = await kill_switch(bus, "release", f"race {i} over")
            windows.append((ack.ts, release.ts))
            await acks.wait(release.id, ("execution",))
        # every verdict of the last round decided (sent or refused) before the sends are counted
        await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the last verdicts settled")
    sends = [ts for (ts,) in query(database_url, "SELECT ts FROM fills")]
    violations = [ts for ts in sends if any(lo < ts < hi for lo, hi in windows)]
    assert sends, "the race never let an order through: the test exercised nothing"
    assert not violations, f"{len(violations)} orders sent after the engage was acknowledged"
    assert (
        scalar(
            database_url,
            "SELECT count(*) FROM orders WHERE status IN"
            " ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', 'UNKNOWN')",
        )
        == 0
    )


async def test_kill_switch_engaged_while_execution_is_cut_off_halts_it_before_any_send(
    services, bus, database_url, nats_server
):
    proxy = TcpProxy(nats_server.port).start()
    try:
        services.configure(EXECUTION_CONFIG)
        services.start("execution", env={"NATS_URL": proxy.url})
        async with ticking(bus):
            first = make_verdict()
            await bus.publish(subjects.verdict(first.symbol), first)
            await wait_until(
                lambda: scalar(database_url, "SELECT count(*) FROM orders") == 1,
                timeout=20,
                message="a first order through the proxy",
            )
            # and all its events out (a cut during them stops execution: fail closed, and "0 orders" by accident)
            await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the first verdict settled")
            # positive control: the same cut with the same queued verdicts, without the switch, sends them
            proxy.cut()
            await asyncio.sleep(0.5)  # the outage: execution is cut off a while before anything is published
            control = [make_verdict(ttl_s=120) for _ in range(10)]
            for v in control:
                await bus.publish(subjects.verdict(v.symbol), v)
            proxy.restore()
            await wait_until(
                lambda: (
                    scalar(
                        database_url,
                        "SELECT count(*) FROM paper_requests WHERE client_order_id = ANY(%s)",
                        ([client_order_id(v.id) for v in control],),
                    )
                    == len(control)
                ),
                timeout=30,
                message="the control's queued verdicts sent after the cut",
            )
            await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the control settled")
            sent_before = scalar(database_url, "SELECT count(*) FROM paper_requests")
            proxy.cut()
            await asyncio.sleep(0.5)  # the outage, as long as the control's
            await kill_switch(bus, "engage", "while execution is cut off")
            queued = [make_verdict(ttl_s=120) for _ in range(10)]
            for v in queued:
                await bus.publish(subjects.verdict(v.symbol), v)
            proxy.restore()
            # reconnect (backoff), the standing state read, every queued verdict redelivered and decided
            await wait_until(lambda: verdicts_settled(bus), timeout=30, message="the queued verdicts decided")
        assert (
            scalar(
                database_url,
                "SELECT count(*) FROM orders WHERE verdict_id = ANY(%s)",
                ([v.id for v in queued],),
            )
            == 0
        )
        assert scalar(database_url, "SELECT count(*) FROM paper_requests") == sent_before, (
            "sent while engaged"
        )
    finally:
        services.stop_all()  # while the proxy still passes their goodbyes (else each waits out its stop timeout)
        proxy.close()


async def test_garbage_on_the_kill_switch_subject_blocks_sends_until_a_valid_command(
    services, bus, database_url
):
    services.configure(EXECUTION_CONFIG)
    services.start("execution")
    acks = await Acks().attach(bus)
    async with ticking(bus):
        release = await kill_switch(bus, "release", "start clean")
        await acks.wait(release.id, ("execution",))
        await bus.nc.publish(subjects.kill_switch(), b'{"action": "release", "oops": true}')
        # the garbage has landed: execution says so (unknown standing state = blocked = halted)
        await wait_heartbeat(bus, "execution", where=lambda hb: hb.status == "halted")
        # execution holds a verdict while the standing state is unknown, until the verdict expires (then refuses
        # it as expired): a short life, so that it is decided and acked before we look
        blocked = make_verdict(ttl_s=2.0)
        await bus.publish(subjects.verdict(blocked.symbol), blocked)
        await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the blocked verdict decided")
        assert scalar(database_url, "SELECT count(*) FROM orders") == 0, (
            "sent while the standing state was unreadable"
        )
        release = await kill_switch(bus, "release", "a valid command again")
        await acks.wait(release.id, ("execution",))
        ok = make_verdict()
        await bus.publish(subjects.verdict(ok.symbol), ok)
        await wait_until(
            lambda: scalar(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", (ok.id,)) == 1,
            timeout=20,
            message="an order once the state is known",
        )

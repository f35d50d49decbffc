"""Scenarios 1-3: NATS restarted, Postgres restarted, execution (and risk) SIGKILLed mid-flow.

The test plays risk's decisions: it publishes approved verdicts (alternating BUY/SELL) at a steady rate,
through the fault, retrying each with its own id until JetStream accepts it. Every verdict JetStream
accepted must end as exactly one journaled order, sent at most once (counted in the paper exchange's own
record); nothing is filled twice. Where the real risk runs beside, its book (positions, cash, realized
P&L, the fills its ledger applied) must end equal to the journal.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from libs.common import subjects
from tests.helpers import wait_until
from tests.kit.execution import (
    BOOK_CONFIG,
    EXECUTION_CONFIG,
    assert_one_order_per_verdict,
    make_verdict,
    orders_by_verdict,
    publish_with_retry,
    query,
    scalar,
    ticking,
    wait_books_agree,
)

pytestmark = pytest.mark.faults


async def _publish_stream(
    bus, n: int, every_s: float, out: list[str], fault_at: int, fault, epoch_of: str | None = None
) -> None:
    """`epoch_of`: the database of the real risk running beside; each verdict carries its current epoch."""
    for i in range(n):
        if i == fault_at:
            await fault()
        v = make_verdict("BUY" if i % 2 == 0 else "SELL", ttl_s=120, epoch_of=epoch_of)
        await publish_with_retry(bus, subjects.verdict(v.symbol), v)
        out.append(v.id)
        await asyncio.sleep(every_s)  # the stream's pace (the fault lands in the middle of it)


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(
    own_services, own_nats, own_postgres, bus_own
):
    own_services.configure(BOOK_CONFIG)
    own_services.start("execution")
    own_services.start("risk")
    published: list[str] = []

    async def restart_nats() -> None:
        await asyncio.to_thread(own_nats.stop)
        await asyncio.sleep(1.0)  # the outage's duration
        await asyncio.to_thread(own_nats.start)

    async with ticking(bus_own):
        await _publish_stream(
            bus_own, 120, 0.02, published, fault_at=60, fault=restart_nats, epoch_of=own_postgres.url
        )
        await wait_until(
            lambda: len(orders_by_verdict(own_postgres.url)) >= len(published),
            timeout=60,
            message="every published verdict journaled",
        )
        await wait_books_agree(own_postgres.url)
    assert_one_order_per_verdict(own_postgres.url, published)
    assert scalar(own_postgres.url, "SELECT count(*) FROM fills") > 0, (
        "nothing filled: the books compared nothing"
    )


async def test_postgres_restart_mid_stream_sends_nothing_unjournaled_then_resumes(
    own_services, own_postgres, bus_own
):
    own_services.configure(EXECUTION_CONFIG)
    execution = own_services.start("execution")
    published: list[str] = []

    async def crash_postgres() -> None:
        await asyncio.to_thread(own_postgres.stop, "immediate")
        await asyncio.sleep(2.0)  # the outage's duration
        await asyncio.to_thread(own_postgres.start)

    async with ticking(bus_own):
        await _publish_stream(bus_own, 80, 0.02, published, fault_at=40, fault=crash_postgres)
        if not execution.alive:  # fail closed is allowed: the supervisor (compose, launcher) restarts it
            own_services.start("execution")
        await wait_until(
            lambda: len(orders_by_verdict(own_postgres.url)) >= len(published),
            timeout=90,
            message="every published verdict journaled after Postgres came back",
        )
    assert_one_order_per_verdict(own_postgres.url, published)


async def test_execution_sigkilled_mid_flow_reconciles_to_one_order_per_verdict(
    own_services, own_postgres, bus_own
):
    own_services.configure(BOOK_CONFIG)
    proc = own_services.start("execution")
    own_services.start("risk")
    published: list[str] = []
    rng = random.Random(7)

    async with ticking(bus_own):
        # SIGKILL somewhere between journal, send and acknowledgement
        await _kill_while_publishing(
            own_services,
            proc,
            bus_own,
            rounds=4,
            per_round=30,
            rng=rng,
            out=published,
            epoch_of=own_postgres.url,
        )
        await wait_until(
            lambda: len(orders_by_verdict(own_postgres.url)) >= len(published),
            timeout=60,
            message="every verdict journaled after the restarts",
        )
        await wait_until(lambda: not _stuck(own_postgres.url), timeout=20, message="no order left unresolved")
        assert_one_order_per_verdict(own_postgres.url, published)
        await wait_books_agree(own_postgres.url)
    assert scalar(own_postgres.url, "SELECT count(*) FROM fills") > 0, (
        "nothing filled: the books compared nothing"
    )


async def _kill_while_publishing(
    factory, proc, bus, *, rounds: int, per_round: int, rng: random.Random, out: list[str], epoch_of: str
) -> None:
    """Each round: a burst of verdicts, the service SIGKILLed at a random moment inside it, then restarted."""
    for _round in range(rounds):
        batch: list[str] = []
        task = asyncio.create_task(
            _publish_stream(bus, per_round, 0.005, batch, fault_at=-1, fault=None, epoch_of=epoch_of)
        )
        await asyncio.sleep(rng.uniform(0.02, 0.15))  # the kill at a random moment inside the burst
        proc.kill()
        await task
        out += batch
        proc = factory.start(proc.name)


def _fenced(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT verdict_id FROM fenced_verdicts")}


def _stuck(url: str) -> list[tuple]:
    return query(url, "SELECT client_order_id, status FROM orders WHERE status IN ('SUBMITTED', 'UNKNOWN')")


async def test_risk_sigkilled_mid_flow_its_book_still_equals_the_journal(own_services, own_postgres, bus_own):
    own_services.configure(BOOK_CONFIG)
    own_services.start("execution")
    risk = own_services.start("risk")
    published: list[str] = []
    rng = random.Random(11)

    async with ticking(bus_own):
        # SIGKILL between a fill's arrival, its ledger row and its ack
        await _kill_while_publishing(
            own_services,
            risk,
            bus_own,
            rounds=3,
            per_round=20,
            rng=rng,
            out=published,
            epoch_of=own_postgres.url,
        )
        # A verdict still in flight when a new risk writer took over carries the old epoch: execution refuses
        # it (fenced_verdicts) instead of sending it. Every verdict ends as exactly one of the two.
        await wait_until(
            lambda: (
                len(set(orders_by_verdict(own_postgres.url)) | _fenced(own_postgres.url)) >= len(published)
            ),
            timeout=60,
            message="every verdict journaled or fenced",
        )
        await wait_books_agree(own_postgres.url)
    fenced = _fenced(own_postgres.url)
    assert not fenced & set(orders_by_verdict(own_postgres.url)), "a fenced verdict was also journaled"
    assert len(fenced) < len(published), "everything fenced: the positive control traded nothing"
    assert_one_order_per_verdict(own_postgres.url, [v for v in published if v not in fenced])
    assert scalar(own_postgres.url, "SELECT count(*) FROM fills") > 0, (
        "nothing filled: the books compared nothing"
    )

"""The writer lock's fencing epoch on a real Postgres: each holder gets a new epoch; a holder that stops
querying (paused) loses its session, and so the lock, after the session timeout; execution's journal writes
refuse a deposed execution epoch, and its order insert refuses a verdict of a deposed risk writer (recorded in
`fenced_verdicts`), each in the statement that writes."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import psycopg
import pytest

from libs.common.db import open_pool
from libs.common.writer_lock import LockLostError, WriterLock
from services.execution.journal import DUPLICATE, INSERTED, STALE_RISK_EPOCH, Journal, NewOrder
from services.execution.ledger import Ledger

pytestmark = pytest.mark.integration
D = Decimal


def _order(coid: str, risk_epoch: int | None) -> NewOrder:
    return NewOrder(
        client_order_id=coid,
        verdict_id=f"v-{coid}",
        signal_id=f"s-{coid}",
        symbol="BTC/USDT",
        side="BUY",
        order_type="MARKET",
        quantity=D("0.001"),
        price_limit=D("60000"),
        mode="paper",
        risk_epoch=risk_epoch,
        issued_by="risk-old",
    )


def _rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


async def test_a_holder_that_stops_querying_loses_the_lock_after_the_session_timeout(database_url):
    a = WriterLock(database_url, "bnml.test.writer", "test", holder="a", session_timeout_s=1.0)
    b = WriterLock(database_url, "bnml.test.writer", "test", holder="b", session_timeout_s=1.0)
    try:
        assert await a.try_acquire() and a.epoch == 1
        for _ in range(4):  # a live holder queries more often than the timeout: it keeps the lock
            await asyncio.sleep(0.4)
            assert await a.still_held()
            assert not await b.try_acquire()
        await asyncio.sleep(2.0)  # a paused holder: no query for longer than the timeout
        assert await b.try_acquire(), "the server did not end the idle lock session"
        assert b.epoch == 2
        assert not await a.still_held()
        assert _rows(database_url, "SELECT role, epoch, holder FROM writer_epochs") == [("test", 2, "b")]
    finally:
        await a.release()
        await b.release()


async def test_the_journal_refuses_a_deposed_execution_epoch_and_a_deposed_risk_epoch(database_url):
    pool = await open_pool(database_url)
    old_exec = WriterLock(database_url, "bnml.execution.writer", "execution")
    new_exec = WriterLock(database_url, "bnml.execution.writer", "execution")
    risk_a = WriterLock(database_url, "bnml.risk.writer", "risk")
    risk_b = WriterLock(database_url, "bnml.risk.writer", "risk")
    try:
        journal = Journal(pool, "paper")
        # no risk writer ever took the lock: an epoch-0 verdict (tests, older risk) is journaled
        assert await old_exec.try_acquire()
        journal.epoch = old_exec.epoch
        assert await journal.insert_order(_order("bnml-0", 0), "x1") == INSERTED
        assert await risk_a.try_acquire()
        assert (
            await journal.insert_order(_order("bnml-1", risk_a.epoch), "x1") == INSERTED
        )  # positive control
        assert await journal.insert_order(_order("bnml-1", risk_a.epoch), "x1") == DUPLICATE
        assert await journal.insert_order(_order("bnml-2", 0), "x1") == STALE_RISK_EPOCH
        await risk_a.release()
        assert await risk_b.try_acquire()  # risk writer b took over: a's verdicts are refused from now on
        assert await journal.insert_order(_order("bnml-3", risk_a.epoch), "x1") == STALE_RISK_EPOCH
        assert journal.last_risk_epoch == risk_b.epoch
        assert await journal.insert_order(_order("bnml-4", risk_b.epoch), "x1") == INSERTED
        assert await journal.insert_order(_order("flatten", None), "x1") == INSERTED  # not from a verdict
        # execution: a successor takes the lock (the old session is cut): every write of the old epoch fails
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (old_exec.pid,))
        assert await new_exec.try_acquire() and new_exec.epoch == old_exec.epoch + 1
        with pytest.raises(LockLostError):
            await journal.insert_order(_order("bnml-5", risk_b.epoch), "x1")
        with pytest.raises(LockLostError):
            await journal.commit_order_update(
                "bnml-4",
                status="FILLED",
                reason=None,
                filled=D("0.001"),
                average_price=D("60000"),
                fee_usdt_add=D("0"),
                locked=D("0"),
                trades=1,
                fills=[],
                ledger=Ledger(),
                symbol="BTC/USDT",
                assets={"USDT"},
            )
        with pytest.raises(LockLostError):
            await journal.set_status("bnml-4", "CANCELLED", reason="old writer")
        with pytest.raises(LockLostError):
            await journal.mark_sent("bnml-4", "x1")
        successor = Journal(pool, "paper", epoch=new_exec.epoch)
        assert await successor.insert_order(_order("bnml-5", risk_b.epoch), "x2") == INSERTED
        assert (await successor.set_status("bnml-4", "CANCELLED", reason="new writer"))[
            "status"
        ] == "CANCELLED"
    finally:
        for lock in (old_exec, new_exec, risk_a, risk_b):
            await lock.release()
        await pool.close()
    orders = dict(_rows(database_url, "SELECT client_order_id, sent_by FROM orders"))
    assert orders == {"bnml-0": "x1", "bnml-1": "x1", "bnml-4": "x1", "flatten": "x1", "bnml-5": "x2"}
    fenced = _rows(
        database_url,
        "SELECT verdict_id, risk_epoch, current_epoch, issued_by, refused_by"
        " FROM fenced_verdicts ORDER BY id",
    )
    assert fenced == [("v-bnml-2", 0, 1, "risk-old", "x1"), ("v-bnml-3", 1, 2, "risk-old", "x1")]
    assert _rows(database_url, "SELECT status FROM orders WHERE client_order_id = 'bnml-4'") == [
        ("CANCELLED",)
    ]

"""The single-writer lock on a real Postgres: one holder, a standby that cannot take it, and a fence that says
"lost" (and rolls a write back) once the holder's session is gone."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from libs.common.writer_lock import LockLostError, WriterLock

pytestmark = pytest.mark.integration


async def test_one_holder_and_a_fence_once_its_session_is_cut(database_url):
    a, b = (
        WriterLock(database_url, "bnml.test.writer", "test"),
        WriterLock(database_url, "bnml.test.writer", "test"),
    )
    try:
        assert await a.try_acquire() and not await b.try_acquire()
        assert await a.still_held()
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            await a.check_on(conn)  # held: the write may go ahead
            await conn.execute("SELECT pg_terminate_backend(%s)", (a.pid,))  # the holder's session is cut
            assert not await a.still_held()
            with pytest.raises(LockLostError):
                await a.check_on(conn)
        assert await b.try_acquire() and await b.still_held()  # the standby takes over
        assert b.epoch == a.epoch + 1  # with a fencing epoch no earlier holder had
    finally:
        await a.release()
        await b.release()


async def test_a_stall_leaves_the_lock_unconfirmed_until_the_server_is_asked(database_url):
    """A writer that did not run for a while (SIGSTOP, starvation) must ask the server before it decides again:
    `unconfirmed_for` grows with real time since the last confirmation and is reset only by the server's answer."""
    now = [100.0]
    a = WriterLock(database_url, "bnml.test.stall", "test", monotonic=lambda: now[0])
    try:
        assert a.unconfirmed_for() == float("inf")  # not held: never confirmed
        assert await a.try_acquire()
        assert a.unconfirmed_for() == 0.0
        now[0] += 3.0  # the process was paused for 3 s
        assert a.unconfirmed_for() == 3.0
        assert (
            await a.still_held()
        )  # positive control: nobody took it; the server says so, and that confirms it
        assert a.unconfirmed_for() == 0.0
        now[0] += 3.0
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            await conn.execute("SELECT pg_terminate_backend(%s)", (a.pid,))  # cut while it was paused
        assert a.unconfirmed_for() == 3.0
        assert not await a.still_held()
        assert a.unconfirmed_for() == float("inf")
    finally:
        await a.release()

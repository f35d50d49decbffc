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

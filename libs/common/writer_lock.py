"""A single-writer lock with a fencing epoch: a Postgres session-level advisory lock held on a dedicated
connection, and a per-role epoch (`writer_epochs`) incremented by each holder as it takes the lock.

Only the holder may make the decision it guards (risk: approve verdicts; execution: journal and send
orders). A standby tries again until the lock is free. The lock lives exactly as long as its session: a
crashed or killed holder's session ends and the lock is free; a holder whose connection the server ended
(restart, `pg_terminate_backend`, a network cut) has lost it. A holder paused with SIGSTOP keeps its TCP
connection, so the lock session sets `idle_session_timeout` (Postgres >= 14): a holder alive checks its lock
every check interval, so its session is never idle that long, while a paused one's session is ended by the
server after `session_timeout_s`, and the standby takes over within that bound plus its own check interval.

The fence is the epoch, not a question asked before each act. Each act that could reach the exchange
carries the epoch of the writer that decided it and is checked by the statement that makes it durable:
execution's journal insert of an order refuses a verdict whose `risk_epoch` is not risk's current epoch,
and every execution journal write refuses an execution epoch that is not current (the SQL is in
`services/execution/journal.py`). A writer paused across a takeover resumes with a stale epoch and acts on nothing; risk's
own state writes also check the lock inside their transactions (`check_on`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import psycopg
from psycopg.rows import DictRow, dict_row

HELD_SQL = (
    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
    " AND objsubid = 1 AND classid = ((%s::bigint >> 32) & 4294967295)::oid"
    " AND objid = (%s::bigint & 4294967295)::oid"
)

TRY_SQL = "SELECT pg_try_advisory_lock(%s) AS ok, pg_backend_pid() AS pid"
# Run on the lock's session right after pg_try_advisory_lock succeeded: this holder's epoch.
TAKE_EPOCH_SQL = (
    "INSERT INTO writer_epochs (role, epoch, holder, pid, taken_at) VALUES (%s, 1, %s, pg_backend_pid(),"
    " now()) ON CONFLICT (role) DO UPDATE SET epoch = writer_epochs.epoch + 1,"
    " holder = EXCLUDED.holder, pid = EXCLUDED.pid, taken_at = now() RETURNING epoch"
)


class LockLostError(Exception):
    """This process no longer holds the writer lock: whatever it was about to write or publish must not happen."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (e.g. "bnml.risk.writer")."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class WriterLock:
    """One role's single-writer lock (risk: `bnml.risk.writer`, execution: `bnml.execution.writer`).

    `epoch` is this holder's fencing epoch (0 until the lock is first taken); a holder that loses the lock
    and takes it again gets a new one.
    """

    def __init__(
        self,
        url: str,
        name: str,
        role: str,
        *,
        holder: str = "",
        session_timeout_s: float | None = None,
        connect_timeout_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.name = name
        self.role = role
        self.holder = holder
        self.key = lock_key(name)
        self.session_timeout_s = session_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.conn: psycopg.AsyncConnection[DictRow] | None = None
        self.held = False
        self.epoch = 0
        self.pid: int | None = None  # the lock session's backend pid, for fencing other connections' writes
        # real time (never a data clock): when the server last showed this session alive and holding the lock
        self._monotonic = monotonic
        self.confirmed_at: float | None = None

    async def _connect(self) -> psycopg.AsyncConnection[DictRow]:
        # psycopg's stub says int; libpq has always been given the float's text (behaviour kept as it was)
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=self.connect_timeout_s,  # type: ignore[arg-type]  # float kept on purpose (above)
        )
        if self.session_timeout_s is not None:
            # A paused holder's session (and so its lock) ends after this long without a query.
            try:
                await conn.execute(f"SET idle_session_timeout = {int(self.session_timeout_s * 1000)}")
            except psycopg.Error as exc:
                await conn.close()
                raise RuntimeError(
                    f"{self.name}: cannot set idle_session_timeout (Postgres >= 14 is needed so "
                    f"that a paused writer loses its lock): {exc}"
                ) from None
        return conn

    async def _drop(self) -> None:
        conn, self.conn, self.held = self.conn, None, False
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception:
                pass

    async def try_acquire(self) -> bool:
        """Take the lock if it is free (never waits), and with it a new epoch. True if this session now holds it.

        A session-level advisory lock survives a failed statement after it, so if the epoch cannot be taken
        the session is closed (which frees the lock): no holder ever lacks an epoch."""
        row = None
        if self.conn is not None and not self.conn.closed:
            try:
                row = await (await self.conn.execute(TRY_SQL, (self.key,))).fetchone()
            except psycopg.OperationalError:  # the server ended this session (e.g. it idled out): a new one
                await self._drop()
        if row is None:
            self.held = False
            self.conn = await self._connect()
        conn = self.conn
        assert conn is not None  # connected above, or the open session that answered TRY_SQL
        try:
            if row is None:
                row = await (await conn.execute(TRY_SQL, (self.key,))).fetchone()
            if not (row and row["ok"]):
                self.held = False
                return False
            self.pid = row["pid"]
            got = await (await conn.execute(TAKE_EPOCH_SQL, (self.role, self.holder))).fetchone()
            if got is None:
                raise RuntimeError(f"{self.name}: taking the epoch returned no row")
            self.epoch = int(got["epoch"])
        except BaseException:
            await self._drop()  # a broken session (e.g. ended by the server) is reconnected on the next try
            raise
        self.held = True
        self.confirmed_at = self._monotonic()
        return True

    async def still_held(self) -> bool:
        """Ask the server whether this session still holds the lock (False if the session is gone).

        A round trip on the lock's own connection (it also keeps the session from idling out): a session the
        server ended fails here, and a session that lives holds its session-level lock, so the answer is the
        server's, not a cached flag. The writers' periodic check; never needed on a hot path (the epoch fences).
        """
        if not self.held or self.conn is None or self.conn.closed:
            self.held = False
            return False
        try:
            row = await (await self.conn.execute(HELD_SQL, (self.pid, self.key, self.key))).fetchone()
            self.held = bool(row and row["n"])
        except Exception:
            self.held = False
        if not self.held:
            await self._drop()
        else:
            self.confirmed_at = self._monotonic()
        return self.held

    def unconfirmed_for(self) -> float:
        """Seconds since the server last showed this session alive and holding the lock (inf if never).

        The periodic check and the keep-alive confirm it about every second. Much longer means this process
        did not run (paused by SIGSTOP, starved, a long GC): a successor may have taken over meanwhile, so a
        writer asks the server (`still_held`) before it decides anything again."""
        if not self.held or self.confirmed_at is None:
            return float("inf")
        return self._monotonic() - self.confirmed_at

    async def keep_alive(self) -> None:
        """Forever (a task of the holder's process): touch the lock session every third of the session
        timeout while held, so that a live writer busy elsewhere (a long takeover sequence, a live start-up
        that talks to the exchange) never idles out; a paused process runs no task, so its session does.
        A failure is left to the writer's own `still_held` check."""
        interval = min(1.0, (self.session_timeout_s or 3.0) / 3)
        while True:
            await asyncio.sleep(interval)
            if self.held and self.conn is not None and not self.conn.closed:
                try:
                    await self.conn.execute("SELECT 1")
                    self.confirmed_at = self._monotonic()  # the session lives, so its session-level lock does
                except Exception:
                    pass

    async def check_on(self, conn: psycopg.AsyncConnection) -> None:
        """Inside another connection's transaction: raise LockLostError unless this process's lock session
        still holds the lock, so a fenced writer's state write rolls back instead of overwriting its
        successor's."""
        if not self.held or self.pid is None:
            raise LockLostError(f"{self.name}: not held")
        cur = await conn.execute(HELD_SQL, (self.pid, self.key, self.key))
        row = await cur.fetchone()
        n = row["n"] if isinstance(row, dict) else (row[0] if row else 0)
        if not n:
            self.held = False
            raise LockLostError(f"{self.name}: the lock session {self.pid} no longer holds it")

    async def release(self) -> None:
        """Let go at once (a standby takes over without waiting for a timeout). A session already gone
        holds nothing: nothing to undo."""
        if self.conn is not None and not self.conn.closed:
            try:
                if self.held:
                    await self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.OperationalError:
                pass
            finally:
                await self.conn.close()
        self.held = False

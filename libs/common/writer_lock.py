"""A single-writer lock: a Postgres session-level advisory lock held on a dedicated connection.

Only its holder may make the decision it guards (risk: publish verdicts). A standby tries again until the
lock is free. The lock lives exactly as long as its session: a crashed or killed holder's session ends and
the lock is free; a holder whose connection the server ended (restart, `pg_terminate_backend`, a network
cut) has lost it, and `still_held` says so. That is the fence: a writer asks `still_held` right before each
act that could reach the exchange, so a writer paused across a takeover cannot act once it resumes.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg.rows import DictRow, dict_row

HELD_SQL = ("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s"
            " AND objsubid = 1 AND classid = ((%s::bigint >> 32) & 4294967295)::oid"
            " AND objid = (%s::bigint & 4294967295)::oid")


class LockLostError(Exception):
    """This process no longer holds the writer lock: whatever it was about to write or publish must not happen."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (e.g. "bnml.risk.writer")."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class WriterLock:
    def __init__(self, url: str, name: str, *, connect_timeout_s: float = 5.0):
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self.connect_timeout_s = connect_timeout_s
        self.conn: psycopg.AsyncConnection[DictRow] | None = None
        self.held = False
        self.pid: int | None = None  # the lock session's backend pid, for fencing other connections' writes

    async def try_acquire(self) -> bool:
        """Take the lock if it is free (never waits). True if this session now holds it."""
        if self.conn is None or self.conn.closed:
            self.held = False
            # psycopg's stub says int; libpq has always been given the float's text (behaviour kept as it was)
            self.conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=self.connect_timeout_s  # type: ignore[arg-type]
            )
        row = await (await self.conn.execute("SELECT pg_try_advisory_lock(%s) AS ok, pg_backend_pid() AS pid",
                                             (self.key,))).fetchone()
        self.held = bool(row and row["ok"])
        self.pid = row["pid"] if row else None
        return self.held

    async def still_held(self) -> bool:
        """Ask the server whether this session still holds the lock (False if the session is gone).

        A round trip on the lock's own connection: a session the server ended fails here, and a session
        that lives holds its session-level lock, so the answer is the server's, not a cached flag.
        """
        if not self.held or self.conn is None or self.conn.closed:
            self.held = False
            return False
        try:
            row = await (await self.conn.execute(HELD_SQL, (self.pid, self.key, self.key))).fetchone()
            self.held = bool(row and row["n"])
        except Exception:
            self.held = False
        return self.held

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
        if self.conn is not None and not self.conn.closed:
            try:
                if self.held:
                    await self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            finally:
                await self.conn.close()
        self.held = False

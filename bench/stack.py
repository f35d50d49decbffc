"""The servers a benchmark runs against: an embedded NATS and Postgres in a temporary directory, stopped
(and the directory removed) however the benchmark ends."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bnml.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.db import migrate


@dataclass
class Stack:
    tmp: Path
    ns: EmbeddedNats
    pg: EmbeddedPostgres

    def fresh_nats(self, name: str) -> str:
        """A clean bus (no streams or consumers of an earlier phase); returns its URL."""
        self.ns.stop()
        self.ns = EmbeddedNats(self.tmp / name).start()
        return self.ns.url

    def fresh_db(self, name: str) -> str:
        """A new, migrated database per phase, so one phase's breakers and journal never colour the next."""
        return fresh_db(self.pg, name)


def fresh_db(pg: EmbeddedPostgres, name: str) -> str:
    with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url_for(name)
    migrate(url)
    return url


@contextlib.contextmanager
def embedded_stack(prefix: str) -> Iterator[Stack]:
    """NATS (JetStream) and Postgres with fsync on, so journal commits are as durable as in production."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        tmp = Path(d)
        ns = EmbeddedNats(tmp / "nats").start()
        try:
            stack = Stack(tmp, ns, EmbeddedPostgres(tmp / "pg").start())
        except BaseException:
            ns.stop()
            raise
        try:
            yield stack
        finally:
            stack.pg.stop("immediate")
            stack.ns.stop()

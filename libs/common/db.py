"""Postgres helpers: an async psycopg 3 pool, and schema migrations applied by yoyo at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypeAlias, cast

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from libs.common.errors import ConfigurationError, TemporaryError
from libs.common.logging import get_logger

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

DictConnection: TypeAlias = psycopg.AsyncConnection[DictRow]
"""A connection of the services' pool: every row comes back as a dict (`open_pool` sets `dict_row`)."""
Pool: TypeAlias = AsyncConnectionPool[DictConnection]


def _yoyo_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def migrate(url: str, migrations_dir: Path = MIGRATIONS_DIR) -> int:
    """Apply pending migrations (yoyo takes a lock, so concurrent starters are safe). Returns how many ran."""
    from yoyo import get_backend, read_migrations

    if not url:
        raise ConfigurationError("database.url", "empty; set DATABASE_URL or run through the launcher")
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(migrations_dir))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    return len(pending)


async def migrate_async(url: str) -> int:
    return await asyncio.to_thread(migrate, url)


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 5, timeout: float = 10.0, name: str = "bnml"
) -> Pool:
    """Open a pool and check one connection; raise TemporaryError if the database does not answer."""

    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.row_factory = dict_row

    # the cast states what `_configure` makes true of every connection the pool hands out: dict rows
    pool = cast(
        Pool,
        AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            name=name,
            configure=_configure,
            kwargs={"autocommit": True},
            reconnect_timeout=3600,
        ),
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except Exception as exc:
        await pool.close()
        raise TemporaryError(f"database unreachable: {type(exc).__name__}") from exc
    get_logger(component="db").info("database pool open", min_size=min_size, max_size=max_size)
    return pool

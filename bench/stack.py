"""The servers a benchmark runs against: an embedded NATS and Postgres in a temporary directory, stopped
(and the directory removed) however the benchmark ends; and the run directory that `python -m bench`
puts every benchmark's servers under, so that a stopped run (Ctrl-C, SIGTERM) can find and stop any
server a benchmark's own cleanup missed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
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
        pg = EmbeddedPostgres(tmp / "pg")
        try:
            stack = Stack(tmp, ns, pg.start())
        except BaseException:  # an interrupt during initdb / pg_ctl start: stop what did come up
            pg.stop("immediate")
            ns.stop()
            raise
        try:
            yield stack
        finally:
            try:
                stack.pg.stop("immediate")
            finally:
                stack.ns.stop()


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    """A private temporary root for one `python -m bench` run: every `tempfile` directory of this process
    (and, through TMPDIR, of its children) is made under it, so each server's data dir names it."""
    root = Path(tempfile.mkdtemp(prefix="bnml-run-"))  # short: postgres puts its socket in its data dir
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(root), str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        stop_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)


def leftovers(root: Path) -> list[psutil.Process]:
    """Processes of this run still alive: our descendants, and any process whose command line names
    `root` (a daemonized postgres is not our descendant, but its `-D` is under `root`)."""
    found = {p.pid: p for p in psutil.Process().children(recursive=True)}
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(root) in part for part in p.info["cmdline"] or ()):
                found[p.pid] = p
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_leftovers(root: Path, timeout_s: float = 15.0) -> list[str]:
    """Stop every leftover of this run (postgres: SIGQUIT, its immediate shutdown; others: SIGTERM), kill
    what is still there after `timeout_s`; returns what was found, for the report."""
    procs = leftovers(root)
    names = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            names.append(p.name())
            p.send_signal(signal.SIGQUIT if p.name().startswith("postgres") else signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return names


def wait_heartbeat(
    nats_url: str,
    service: str,
    since: float,
    *,
    where: Callable[[dict], bool] | None = None,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> dict:
    """Readiness from the bus, not a log line: the first heartbeat of `service` from a process whose runtime
    began at or after `since` (wall clock, read before its launch) and that `where(hb)` accepts (a shard's
    index). A service heartbeats once its start has returned. `proc`/`log` only explain a failure."""
    import asyncio
    import json
    import time
    from datetime import datetime

    import nats

    async def run() -> dict | None:
        nc = await nats.connect(servers=[u for u in nats_url.split(",") if u])
        got: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

        async def cb(msg) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                hb = json.loads(msg.data)
                began = datetime.fromisoformat(hb["ts"]).timestamp() - float(hb["uptime_s"])
                if not got.done() and began >= since and (where is None or where(hb)):
                    got.set_result(hb)

        await nc.subscribe(f"svc.heartbeat.{service}", cb=cb)
        try:
            deadline = time.monotonic() + timeout
            while not got.done():
                if proc is not None and proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.wait([got], timeout=0.1)
            return got.result() if got.done() else None
        finally:
            await nc.close()

    hb = asyncio.run(run())
    if hb is None:
        why = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else ""
        tail = log.read_text(errors="replace")[-1500:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{service}: no heartbeat {why or f'in {timeout}s'}: {tail}")
    return hb


def source_finished(
    nats_url: str, since: float, *, proc=None, log: Path | None = None, timeout: float = 120.0
):
    """(ticks, elapsed_s, skipped_steps) of the market_data launched at `since`, once its source has finished:
    read from its heartbeat's counters on the bus (`source_finished`, `source_ticks`, `source_elapsed_ms`,
    `source_skipped_steps`), not from its log."""
    hb = wait_heartbeat(
        nats_url,
        "market_data",
        since,
        where=lambda h: bool(h.get("counters", {}).get("source_finished")),
        proc=proc,
        log=log,
        timeout=timeout,
    )
    c = hb["counters"]
    return float(c["source_ticks"]), c["source_elapsed_ms"] / 1000, int(c.get("source_skipped_steps", 0))


def settle(read, target: float, timeout: float = 5.0, interval: float = 0.1) -> float:
    """`read()` once it reaches `target` (every tick sent has been received), or its value after `timeout`
    (what never arrived is the loss the benchmark reports): a wait on the effect, not a fixed drain."""
    import time

    deadline = time.monotonic() + timeout
    value = read()
    while value < target and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value

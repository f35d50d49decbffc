"""One node of a three-node NATS cluster SIGKILLed and restarted mid-stream, the streams at R3.

Risk and execution (paper) run on the cluster as real processes, each given the three URLs; the test plays
signal's part through risk's output: it publishes approved verdicts (alternating BUY/SELL) at a steady rate,
each retried with its own id until JetStream accepts it. Before the fault, the leaders of the VERDICTS,
KILL_SWITCH, ORDERS and FILLS streams are moved onto the node execution is connected to, and that node is
the one killed: the worst single node to lose (execution's connection, its durable verdict consumer, the
kill switch's leader and both streams it writes all go at once).

- Every verdict JetStream acknowledged is in the VERDICTS stream exactly once (counted in the stream itself,
  read back after the restart) and ends as exactly one journaled order, sent once (the paper exchange's own
  record); each fill is in the FILLS stream once, and risk's book equals the journal.
- The kill switch engaged while the node is down latches risk and execution (their acknowledgements and
  their heartbeats say halted), and a verdict published while it stands reaches no exchange; the positive
  control is the stream before it, which did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bnml.embedded import EmbeddedNatsCluster, EmbeddedPostgres
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import Fill, Heartbeat, RiskVerdict
from libs.common.db import migrate
from libs.common.metrics import ServiceMetrics
from services.execution.core import client_order_id
from tests.helpers import ServiceFactory, wait_until
from tests.kit.execution import (
    BOOK_CONFIG,
    Acks,
    assert_one_order_per_verdict,
    kill_switch,
    make_verdict,
    orders_by_verdict,
    paper_sends,
    publish_with_retry,
    scalar,
    ticking,
    wait_books_agree,
)

pytestmark = pytest.mark.faults

REPLICAS = 3
CRITICAL = ("VERDICTS", "KILL_SWITCH", "ORDERS", "FILLS")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedNatsCluster]:
    c = EmbeddedNatsCluster(tmp_path / "nats-cluster", size=3).start()
    try:
        yield c
    finally:
        c.stop(kill=True)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", fsync=False).start()
    try:
        migrate(server.url)
        yield server
    finally:
        server.stop("immediate")


@pytest.fixture
def on_cluster(
    tmp_path: Path, cluster: EmbeddedNatsCluster, pg: EmbeddedPostgres
) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path, cluster.url, pg.url)
    factory.configure({**BOOK_CONFIG, "nats": {"replicas": REPLICAS}})
    yield factory
    factory.stop_all()


@pytest.fixture
async def cbus(cluster: EmbeddedNatsCluster) -> AsyncIterator[Bus]:
    from prometheus_client import CollectorRegistry

    b = Bus(cluster.url, "test", ServiceMetrics("test", registry=CollectorRegistry()))
    await b.connect(retry_initial=False)
    await b.ensure_streams(replicas=REPLICAS)
    yield b
    await b.drain()


# -- where things are in the cluster --------------------------------------------------------------------
def _monitor(cluster: EmbeddedNatsCluster, i: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.node(i).monitor_port}{path}", timeout=2) as r:
        return json.loads(r.read())


def node_of_connection(cluster: EmbeddedNatsCluster, name: str) -> int:
    """The node a client (by its connection name, `bnml-<service>`) is connected to."""
    for i in range(cluster.size):
        if cluster.node(i).running and any(
            c.get("name") == name for c in _monitor(cluster, i, "/connz?limit=1024")["connections"]
        ):
            return i
    raise AssertionError(f"no node has a connection named {name}")


async def leader_of(bus: Bus, stream: str) -> str:
    info = await bus.js.stream_info(stream)
    return info.cluster.leader if info.cluster else ""


async def move_leader(bus: Bus, stream: str, server: str) -> None:
    """Ask the stream's leader to step down in favour of `server` until it leads."""

    async def there() -> bool:
        if await leader_of(bus, stream) == server:
            return True
        with contextlib.suppress(Exception):
            await bus.nc.request(
                f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
                json.dumps({"placement": {"preferred": server}}).encode(),
                timeout=2,
            )
        await asyncio.sleep(0.3)  # the election the step-down asked for takes a moment; then look again
        return await leader_of(bus, stream) == server

    await wait_until(there, timeout=30, interval=0.1, message=f"{stream} led by {server}")


async def replicated(bus: Bus, stream: str) -> bool:
    """Leader elected and both followers current (the restarted node caught up)."""
    info = await bus.js.stream_info(stream)
    peers = info.cluster.replicas or [] if info.cluster else []
    return bool(
        info.cluster
        and info.cluster.leader
        and len(peers) == REPLICAS - 1
        and all(p.current and not p.offline for p in peers)
    )


async def stream_ids(bus: Bus, stream: str, subject: str, key) -> Counter:
    """Every message the stream holds on `subject`, counted by `key(raw data)` (read from sequence 1)."""
    counts: Counter = Counter()
    info = await bus.js.stream_info(stream)
    last = info.state.last_seq
    sub = await bus.js.subscribe(subject, stream=stream, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            counts[key(msg.data)] += 1
            if msg.metadata.sequence.stream >= last:
                return counts
    finally:
        await sub.unsubscribe()


class Heartbeats:
    def __init__(self) -> None:
        self.last: dict[str, Heartbeat] = {}

    async def attach(self, bus: Bus) -> Heartbeats:
        async def on(hb: Heartbeat, subject: str) -> None:
            self.last[hb.service] = hb

        await bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, on)
        return self


async def _publish(bus: Bus, n: int, every_s: float, out: list[str], database_url: str) -> None:
    for i in range(n):
        v = make_verdict("BUY" if i % 2 == 0 else "SELL", ttl_s=120, epoch_of=database_url)
        await publish_with_retry(bus, subjects.verdict(v.symbol), v)
        out.append(v.id)
        await asyncio.sleep(every_s)  # the stream's pace (the faults land in the middle of it)


@contextlib.asynccontextmanager
async def supervised(factory: ServiceFactory) -> AsyncIterator[list[str]]:
    """Restart a service that exited, as compose's restart policy and the launcher do: a service that cannot
    publish an order event while the streams elect new leaders stops (fail closed). Yields the restarts."""
    restarts: list[str] = []

    async def loop() -> None:
        while True:
            for p in list(factory.started):
                if p.proc is not None and not p.alive:
                    factory.started.remove(p)
                    restarts.append(p.name)
                    # not waited for: a restart that dies again (its start-up can time out while the
                    # streams still elect) is seen on the next pass and restarted again, as compose does
                    await asyncio.to_thread(factory.start, p.name, wait=False)
            await asyncio.sleep(0.3)  # the supervisor's pass interval (compose checks on its own period)

    task = asyncio.create_task(loop())
    try:
        yield restarts
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_node_sigkilled_and_restarted_at_r3_loses_and_duplicates_nothing_and_the_switch_latches(
    on_cluster, cluster, pg, cbus
):
    on_cluster.start("execution")
    on_cluster.start("risk")
    acks = await Acks().attach(cbus)
    beats = await Heartbeats().attach(cbus)
    for stream in CRITICAL:
        info = await cbus.js.stream_info(stream)
        assert info.config.num_replicas == REPLICAS, f"{stream} at R{info.config.num_replicas}"

    # the worst node to lose: execution's own, made leader of every stream that moves money
    victim = node_of_connection(cluster, "bnml-execution")
    victim_name = f"bnml-{victim + 1}"
    for stream in CRITICAL:
        await move_leader(cbus, stream, victim_name)

    before, during, after, while_engaged = [], [], [], []
    async with ticking(cbus), supervised(on_cluster) as restarts:
        await _publish(cbus, 40, 0.02, before, pg.url)
        await asyncio.to_thread(cluster.node(victim).stop, True)  # SIGKILL mid-stream
        await _publish(cbus, 40, 0.02, during, pg.url)
        await wait_until(
            lambda: set(before + during) <= set(orders_by_verdict(pg.url)),
            timeout=45,
            message="every verdict journaled with one node down",
        )
        assert set(paper_sends(pg.url)) >= {client_order_id(v) for v in before + during}, "positive control"

        # the kill switch engaged while the node is down latches everyone who trades
        engage = await kill_switch(cbus, "engage", "node down")
        got = await acks.wait(engage.id, ("risk", "execution"), timeout=30)
        assert all(a.engaged for a in got.values()), got
        assert got["execution"].open_orders == 0, got["execution"]
        await wait_until(
            lambda: all(
                beats.last.get(s) and beats.last[s].status == "halted" for s in ("risk", "execution")
            ),
            timeout=10,
            message="risk and execution heartbeats halted",
        )
        sent_before = scalar(pg.url, "SELECT count(*) FROM paper_requests")
        for _ in range(5):
            v = make_verdict(ttl_s=120, epoch_of=pg.url)
            await publish_with_retry(cbus, subjects.verdict(v.symbol), v)
            while_engaged.append(v.id)
        await wait_until(
            lambda: _settled(cbus), timeout=30, message="the verdicts sent while engaged decided"
        )

        await asyncio.to_thread(cluster.restart, victim)
        await asyncio.to_thread(cluster.wait_healthy, 60)
        for stream in CRITICAL:
            await wait_until(
                lambda stream=stream: replicated(cbus, stream),
                timeout=60,
                message=f"{stream} replicated on the restarted node again",
            )
        assert scalar(pg.url, "SELECT count(*) FROM paper_requests") == sent_before, "sent while engaged"
        assert scalar(pg.url, "SELECT count(*) FROM orders WHERE verdict_id = ANY(%s)", (while_engaged,)) == 0

        release = await kill_switch(cbus, "release", "node back")
        await acks.wait(release.id, ("risk", "execution"), timeout=30)
        await _publish(cbus, 20, 0.02, after, pg.url)
        traded = before + during + after
        await wait_until(
            lambda: set(traded) <= set(orders_by_verdict(pg.url)),
            timeout=45,
            message="every verdict after the restart journaled",
        )
        await wait_books_agree(pg.url)

    assert_one_order_per_verdict(pg.url, traded)
    # counted in the streams themselves (read back after the restart): each verdict and each fill once
    verdicts = await stream_ids(
        cbus, "VERDICTS", subjects.ALL_VERDICTS, lambda d: RiskVerdict.model_validate_json(d).id
    )
    lost = [v for v in traded + while_engaged if v not in verdicts]
    assert not lost, f"{len(lost)} acknowledged verdicts missing from the stream, e.g. {lost[:3]}"
    assert max(verdicts.values()) == 1, (
        f"verdicts stored twice: {[v for v, n in verdicts.items() if n > 1][:3]}"
    )
    fills = await stream_ids(
        cbus,
        "FILLS",
        subjects.ALL_FILLS,
        lambda d: (lambda f: (f.exchange, f.symbol, f.trade_id))(Fill.model_validate_json(d)),
    )
    journal_fills = scalar(pg.url, "SELECT count(*) FROM fills")
    assert journal_fills > 0, "nothing filled: the fill counts compared nothing"
    assert max(fills.values()) == 1, f"fills stored twice: {[f for f, n in fills.items() if n > 1][:3]}"
    assert len(fills) == journal_fills, f"{journal_fills} fills journaled, {len(fills)} in the FILLS stream"
    print(f"victim node {victim_name}; restarted by the supervisor: {restarts}")


async def _settled(bus: Bus) -> bool:
    info = await bus.js.consumer_info("VERDICTS", "execution")
    return info.num_pending == 0 and info.num_ack_pending == 0

"""tick -> order on a three-node NATS cluster (streams at R3, every write fsynced: deploy/nats/cluster.conf)
against the single server, in the same run, on the same Postgres.

Each phase: a fresh bus (the single embedded server, or `EmbeddedNatsCluster` of 3 on loopback) and a fresh
database, the suite's market_data, signal, risk and execution as real processes (bench/bench_pipeline.py
`tick_to_order`: 1,000 ticks/s over 7 symbols, a decision every 50th tick). The figures: p50/p99 of tick ->
paper-filled order, and the steps on the way, with `_single` and `_cluster` suffixes, and the cluster's p50
and p99 over the single server's. On this 2-core machine the three servers, four services and Postgres all
share the two cores, so the cluster figure includes that contention as well as the replication round trips
(a leader waits for one follower's ack, each node fsyncs) that a real three-machine cluster has.
"""

from __future__ import annotations

import asyncio

from bench.bench_pipeline import ROOT, tick_to_order
from bench.stack import embedded_stack
from bnml.embedded import EmbeddedNatsCluster

KEYS = (
    "tick_to_order_p50_ms",
    "tick_to_order_p99_ms",
    "tick_to_order_orders",
    "tick_to_verdict_p50_ms",
    "tick_to_verdict_p99_ms",
    "tick_to_journaled_p50_ms",
    "tick_to_journaled_p99_ms",
)


def _provision(url: str, replicas: int) -> str:
    """The streams created before the suite starts (as on a running deployment), so both phases measure the
    path, not the services' first start racing to create R3 streams."""
    from prometheus_client import CollectorRegistry

    from libs.common.bus import Bus
    from libs.common.metrics import ServiceMetrics

    async def go() -> None:
        bus = Bus(url, "bench", ServiceMetrics("bench", registry=CollectorRegistry()))
        await bus.connect(retry_initial=False)
        try:
            await bus.ensure_streams(replicas=replicas)
        finally:
            await bus.drain()

    asyncio.run(go())
    return url


def _tagged(figures: dict[str, float], tag: str) -> dict[str, float]:
    return {f"{k}_{tag}": figures[k] for k in KEYS if k in figures}


def run(quick: bool = False) -> dict[str, float]:
    from libs.common.settings import load_settings
    from services.signal.train import ensure_model

    ensure_model(load_settings(ROOT / "configs" / "bot.yaml"))  # a fresh clone: signal would train at start
    seconds = 4.0 if quick else 30.0
    out: dict[str, float] = {}
    with embedded_stack("bnml-bench-cluster-") as st:
        (st.tmp / "single").mkdir()
        single = tick_to_order(
            st.tmp / "single", _provision(st.fresh_nats("nats-single"), 1), st.fresh_db("single"), seconds
        )
        out.update(_tagged(single, "single"))
        st.ns.stop()  # one bus at a time on the two cores
        cluster = EmbeddedNatsCluster(st.tmp / "nats-cluster", size=3).start()
        try:
            (st.tmp / "cluster").mkdir()
            clustered = tick_to_order(
                st.tmp / "cluster",
                _provision(cluster.url, 3),
                st.fresh_db("cluster"),
                seconds,
                nats_replicas=3,
            )
        finally:
            cluster.stop()
        out.update(_tagged(clustered, "cluster"))
    for q in ("p50", "p99"):
        a, b = out.get(f"tick_to_order_{q}_ms_single"), out.get(f"tick_to_order_{q}_ms_cluster")
        if a and b:
            out[f"tick_to_order_{q}_cluster_over_single"] = b / a
    return out

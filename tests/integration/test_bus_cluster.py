"""The bus on a three-node NATS cluster (bnml/embedded.py EmbeddedNatsCluster): a URL list, streams at R3,
an R1 stream scaled up in place, never scaled down by a client configured lower, and R3 refused (naming
the setting) on a single server."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bnml.embedded import CLUSTER_JETSTREAM, EmbeddedNatsCluster
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.errors import ConfigurationError
from libs.common.metrics import ServiceMetrics
from tests.helpers import wait_until
from tests.kit.execution import make_verdict


def _bus(url: str, name: str = "test") -> Bus:
    return Bus(url, name, ServiceMetrics(name, registry=CollectorRegistry()))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedNatsCluster]:
    c = EmbeddedNatsCluster(tmp_path / "cluster", size=3).start()
    try:
        yield c
    finally:
        c.stop(kill=True)


def test_every_node_runs_jetstream_with_every_write_fsynced(cluster):
    assert "sync_interval: always" == CLUSTER_JETSTREAM
    for node in cluster.nodes:
        with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/varz", timeout=2) as r:
            varz = json.loads(r.read())
        assert varz["cluster"]["name"] == "bnml"
        assert len(varz["cluster"]["urls"]) == 3, varz["cluster"]  # the routes (its own is ignored)
        assert varz["jetstream"]["config"]["sync_always"] is True, varz["jetstream"]["config"]


async def test_streams_at_r3_over_a_url_list_and_reconnect_when_a_node_dies(cluster):
    bus = _bus(cluster.url)
    await bus.connect(retry_initial=False)
    try:
        await bus.ensure_streams(replicas=3)
        for spec in subjects.STREAMS:
            info = await bus.js.stream_info(spec.name)
            assert info.config.num_replicas == 3, spec.name
        on = next(i for i, n in enumerate(cluster.nodes) if n.port == bus.nc.connected_url.port)
        cluster.node(on).stop(kill=True)
        await wait_until(
            lambda: bus.connected and bus.nc.connected_url.port != cluster.node(on).port,
            timeout=15,
            message="reconnected to another node",
        )
        v = make_verdict()

        async def accepted() -> bool:  # the stream may be electing a new leader for a few seconds
            try:
                return await bus.publish(subjects.verdict(v.symbol), v, timeout=1.0)
            except Exception:
                return False

        await wait_until(accepted, timeout=30, message="a verdict stored with one node down")
    finally:
        await bus.drain()


async def test_an_r1_stream_is_scaled_up_in_place_and_never_down(cluster):
    bus = _bus(cluster.url)
    await bus.connect(retry_initial=False)
    try:
        await bus.ensure_streams(replicas=1)
        kept = [make_verdict() for _ in range(5)]
        for v in kept:
            await bus.publish(subjects.verdict(v.symbol), v)
        await bus.ensure_streams(replicas=lambda name: 3 if name == "VERDICTS" else 1)
        info = await bus.js.stream_info("VERDICTS")
        assert info.config.num_replicas == 3 and info.cluster.leader
        assert len(info.cluster.replicas) == 2 and all(p.current for p in info.cluster.replicas)
        assert info.state.messages == len(kept), "the scale-up kept the stream's messages"
        assert (await bus.js.stream_info("FILLS")).config.num_replicas == 1
        # a client with the single-server default (a CLI, a stale config) leaves the R3 stream at R3
        await bus.ensure_streams(replicas=1)
        assert (await bus.js.stream_info("VERDICTS")).config.num_replicas == 3
        v = make_verdict()
        assert await bus.publish(subjects.verdict(v.symbol), v), "publishes work right after the scale-up"
    finally:
        await bus.drain()


async def test_r3_on_a_single_server_is_a_configuration_error_naming_the_setting(nats_url):
    bus = _bus(nats_url)
    await bus.connect(retry_initial=False)
    try:
        with pytest.raises(ConfigurationError) as err:
            await bus.ensure_streams(replicas=3)
        assert err.value.key == "nats.replicas" and "cluster" in err.value.problem
        await bus.ensure_streams(replicas=1)  # the single-server default still works on the same server
    finally:
        await bus.drain()


def test_a_single_url_stays_one_server():
    assert _bus("nats://127.0.0.1:4222").servers == ["nats://127.0.0.1:4222"]
    assert _bus("nats://a:1, nats://b:2,nats://c:3").servers == ["nats://a:1", "nats://b:2", "nats://c:3"]


async def test_ensure_streams_updates_only_a_stream_that_differs(nats_url):
    bus = _bus(nats_url)
    await bus.connect(retry_initial=False)
    try:
        await bus.ensure_streams()
        info = await bus.js.stream_info("ALERTS")
        info.config.description = "changed by hand"
        info.config.max_age = 600.0
        await bus.js.update_stream(info.config)
        updated: list[str] = []
        real = bus.js.update_stream

        async def counting(config):
            updated.append(config.name)
            return await real(config)

        bus.js.update_stream = counting
        await bus.ensure_streams()
        assert updated == ["ALERTS"], "an unchanged stream is left alone (no meta proposal per service start)"
        info = await bus.js.stream_info("ALERTS")
        assert info.config.description == "Alerts" and info.config.max_age == 30 * 86400
    finally:
        await bus.drain()

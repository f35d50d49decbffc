"""`bnml up --nats-cluster 3`: three embedded NATS nodes on loopback, the services on them with R3 streams,
`bnml status` listing the nodes (one stopped shows DOWN), and Ctrl-C stopping all three."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from prometheus_client import CollectorRegistry

from libs.common.bus import Bus
from libs.common.metrics import ServiceMetrics
from tests.helpers import ROOT, processes_left_on
from tests.integration.test_launcher import _bnml, _status

# `bnml up` binds the default ports (API 8000, metrics 9101-9105, Postgres 5433): the `default_ports` fixture
# lets one such test run at a time across the xdist workers of `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_ports")]


async def _replicas(url: str) -> dict[str, int]:
    bus = Bus(url, "test", ServiceMetrics("test", registry=CollectorRegistry()))
    await bus.connect(retry_initial=False)
    try:
        return {
            name: (await bus.js.stream_info(name)).config.num_replicas
            for name in ("KILL_SWITCH", "VERDICTS", "ORDERS", "FILLS")
        }
    finally:
        await bus.drain()


def test_bnml_up_on_a_three_node_cluster(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNML_") and k not in ("NATS_URL", "DATABASE_URL")
    }
    env.update(
        BNML_CONFIG=str(ROOT / "configs" / "bot.yaml"),
        PYTHONUNBUFFERED="1",
        BNML_SIGNAL__MODELS_DIR=str(tmp_path / "models"),
    )
    out = open(tmp_path / "launcher.out", "w")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bnml.cli", "up", "--nats-cluster", "3"],
        cwd=tmp_path,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            assert launcher.poll() is None, (tmp_path / "launcher.out").read_text()
            status = _status(tmp_path, env)
            if status and all(s["status"] == "ok" for s in status["services"].values()):
                break
            time.sleep(1)  # a poll's interval
        assert status and status.get("nats_nodes"), (tmp_path / "launcher.out").read_text()
        nodes = status["nats_nodes"]
        assert len(nodes) == 3 and all(n["reachable"] for n in nodes), nodes
        suite = json.loads((tmp_path / "artifacts" / "run" / "suite.json").read_text())
        assert asyncio.run(_replicas(suite["nats_url"])) == dict.fromkeys(
            ("KILL_SWITCH", "VERDICTS", "ORDERS", "FILLS"), 3
        )
        servers = [
            p for p in psutil.Process(launcher.pid).children(recursive=True) if p.name() == "nats-server"
        ]
        assert len(servers) == 3, [p.cmdline() for p in servers]
        port = nodes[2]["url"].rsplit(":", 1)[1]
        victim = next(p for p in servers if port in p.cmdline())
        victim.kill()  # the launcher's child, so a zombie until the launcher reaps it at stop
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if victim.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)  # a poll's interval
        human = _bnml(tmp_path, "status", env=env)
        assert f"nats node {nodes[2]['url']} DOWN" in human.stdout, human.stdout
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(60)
        except subprocess.TimeoutExpired:
            launcher.kill()
            code = None
        out.close()
    assert code == 0, (tmp_path / "launcher.out").read_text()
    assert "embedded NATS cluster stopped" in (tmp_path / "launcher.out").read_text()
    leftovers = processes_left_on(tmp_path)  # postgres daemonizes: not a descendant
    assert not leftovers, f"left behind: {leftovers}"

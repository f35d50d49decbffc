"""deploy/nats/cluster.conf on three real nats-servers (loopback ports instead of the compose network's, given
on the command line): the nodes form the cluster, fsync every write, keep the users and permissions of
deploy/nats/auth.conf, and hold the streams at R3 as the services create them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from bnml.embedded import _venv_bin, free_port, wait_for_port
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.metrics import ServiceMetrics
from tests.kit.execution import make_verdict
from tests.unit.deploy.tooling import DEPLOY, nats_passwords, password_env, url_with_user

CLUSTER_CONFIG = DEPLOY / "nats" / "cluster.conf"


def _start(tmp: Path, passwords: dict[str, str]) -> tuple[list[subprocess.Popen], list[int], list[int]]:
    ports, monitors, routes = ([free_port() for _ in range(3)] for _ in range(3))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NATS_")}, **password_env(passwords)}
    procs = []
    for i in range(3):
        d = tmp / f"nats-{i + 1}"
        d.mkdir()
        log = open(d / "log", "ab")
        procs.append(
            subprocess.Popen(
                [
                    _venv_bin("nats-server"),
                    "-c",
                    str(CLUSTER_CONFIG),
                    "-js",
                    "-sd",
                    str(d),
                    "--name",
                    f"nats-{i + 1}",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(ports[i]),
                    "-m",
                    str(monitors[i]),
                    "--cluster",
                    f"nats://127.0.0.1:{routes[i]}",
                    "--routes",
                    ",".join(f"nats://127.0.0.1:{p}" for p in routes),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
        log.close()
    for p in ports:
        wait_for_port(p, timeout=30)
    deadline = time.monotonic() + 30
    while not all(_healthy(m) for m in monitors):  # JetStream's meta group has its leader
        assert time.monotonic() < deadline, "the cluster did not become healthy"
        time.sleep(0.1)  # a poll's interval
    return procs, ports, monitors


def _varz(monitor: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=2) as r:
        return json.loads(r.read())


def _healthy(monitor: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


async def test_the_shipped_cluster_config_forms_a_cluster_with_auth_and_r3_streams(tmp_path):
    passwords = nats_passwords()
    procs, ports, monitors = _start(tmp_path, passwords)
    try:
        for m in monitors:
            varz = _varz(m)
            assert varz["jetstream"]["config"]["sync_always"] is True
            assert varz["cluster"]["name"] == "bnml"
        urls = ",".join(url_with_user(f"nats://127.0.0.1:{p}", "risk", passwords["risk"]) for p in ports)
        bus = Bus(urls, "risk", ServiceMetrics("risk", registry=CollectorRegistry()))
        await bus.connect(initial_deadline_s=30)
        try:
            await bus.ensure_streams(replicas=3)
            info = await bus.js.stream_info("VERDICTS")
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
            v = make_verdict()
            assert await bus.publish(subjects.verdict(v.symbol), v)  # risk may publish verdicts ...
        finally:
            await bus.drain()
        errors: list[Exception] = []
        ex = Bus(
            ",".join(
                url_with_user(f"nats://127.0.0.1:{p}", "execution", passwords["execution"]) for p in ports
            ),
            "execution",
            ServiceMetrics("execution", registry=CollectorRegistry()),
        )
        await ex.connect(initial_deadline_s=30)

        async def keep(exc: Exception) -> None:
            errors.append(exc)

        ex.nc._error_cb = keep  # noqa: SLF001 - to see the permission violation
        try:
            await ex.nc.publish(subjects.verdict("BTC/USDT"), b"{}")  # ... execution may not, on any node
            await ex.nc.flush()
        finally:
            await ex.drain()
        assert any("permissions violation" in str(e).lower() for e in errors), errors
    finally:
        for p in procs:
            p.kill()
            p.wait(5)

"""deploy/nats: each service's NATS user may publish only its own subjects, on a real nats-server.

The server runs deploy/nats/nats-server.conf (the same file compose mounts). A denied publish is refused by
the server and shows up in nats-py's error callback as a "Permissions Violation"; an allowed one reaches an
observer connected as ops_api (which may read everything).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from bnml.embedded import free_port
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import (
    Fill,
    Heartbeat,
    KillSwitchAcknowledged,
    OrderEvent,
    RiskVerdict,
    Signal,
    Tick,
    utcnow,
)
from libs.common.metrics import ServiceMetrics
from tests.helpers import ServiceFactory, wait_until
from tests.unit.deploy.tooling import SERVICES, nats_passwords, start_authenticated_nats, url_with_user

pytestmark = pytest.mark.integration

SYM = "BTC/USDT"
# subject -> the users allowed to publish it (everyone else must be refused)
PUBLISH_RULES: dict[str, set[str]] = {
    subjects.verdict(SYM): {"risk"},
    subjects.order(SYM): {"execution"},
    subjects.fill(SYM): {"execution"},
    subjects.kill_switch(): {"ops_api", "ops", "risk"},  # risk only re-asserts an engagement its audit holds
    subjects.tick(SYM): {"market_data"},
    subjects.signal(SYM): {"signal"},
    subjects.drift(): {"signal"},
    subjects.trading_state(): {"risk"},
    subjects.breaker_tripped(): {"risk"},
    subjects.heartbeat("risk"): {"risk"},
    subjects.heartbeat("execution"): {"execution"},
    subjects.kill_switch_ack("execution"): {"execution"},
    subjects.alert("SEV-1"): {"market_data", "signal", "risk", "execution", "ops_api", "ops"},
    "$JS.API.STREAM.DELETE.VERDICTS": set(),
    "$JS.API.STREAM.PURGE.KILL_SWITCH": set(),
}
USERS = ("market_data", "signal", "risk", "execution", "ops_api", "ops")


@pytest.fixture
def passwords() -> dict[str, str]:
    return nats_passwords()


@pytest.fixture
def secure_nats(tmp_path: Path, passwords):
    server = start_authenticated_nats(tmp_path / "nats-secure", passwords)
    yield server
    server.stop()


async def _connect(url: str, user: str, password: str, errors: list[Exception]):
    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    return await nats.connect(url, user=user, password=password, error_cb=on_error, allow_reconnect=False,
                              connect_timeout=5)


async def test_each_user_publishes_only_its_own_subjects(secure_nats, passwords):
    seen: list[str] = []
    observer = await _connect(secure_nats.url, "ops_api", passwords["ops_api"], [])

    async def note(msg) -> None:
        seen.append(msg.subject)

    await observer.subscribe(">", cb=note)
    await observer.flush()
    wrong: list[str] = []
    try:
        for user in USERS:
            errors: list[Exception] = []
            nc = await _connect(secure_nats.url, user, passwords[user], errors)
            try:
                for subject, allowed in PUBLISH_RULES.items():
                    before = len(errors)
                    seen.clear()
                    await nc.publish(subject, b"{}")
                    await nc.flush()
                    if user in allowed:
                        await observer.flush()
                        await wait_until(lambda s=subject: s in seen, timeout=5,
                                         message=f"{user}'s publish to {subject} reaching the observer")
                        if len(errors) > before:
                            wrong.append(f"{user} -> {subject}: allowed but got {errors[-1]}")
                    else:
                        await wait_until(lambda b=before, e=errors: len(e) > b, timeout=5,
                                         message=f"a permissions violation for {user} -> {subject}")
                        if "permissions violation" not in str(errors[-1]).lower():
                            wrong.append(f"{user} -> {subject}: unexpected error {errors[-1]}")
                        await observer.flush()
                        if subject in seen:
                            wrong.append(f"{user} -> {subject}: denied yet delivered")
            finally:
                await nc.close()
    finally:
        await observer.close()
    assert not wrong, "\n".join(wrong)


async def test_connection_without_or_with_wrong_credentials_is_refused(secure_nats, passwords):
    for kwargs in ({}, {"user": "risk", "password": "not-the-password"}, {"user": "nobody", "password": "x"}):
        with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
            await nats.connect(secure_nats.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3,
                               **kwargs)


async def test_a_subscriber_cannot_read_what_its_user_is_not_allowed(secure_nats, passwords):
    errors: list[Exception] = []
    nc = await _connect(secure_nats.url, "market_data", passwords["market_data"], errors)
    try:
        await nc.subscribe(subjects.ALL_VERDICTS)
        await nc.flush()
        await wait_until(lambda: errors, timeout=5, message="a subscription permissions violation")
        assert "permissions violation for subscription" in str(errors[0]).lower()
    finally:
        await nc.close()


def _metrics() -> ServiceMetrics:
    from prometheus_client import CollectorRegistry

    return ServiceMetrics("deploytest", registry=CollectorRegistry())


async def test_services_run_with_their_own_credentials(tmp_path, secure_nats, passwords, database_url):
    """All five services on the secured server: they start, heartbeat, pass ticks, verdicts and JetStream
    traffic, acknowledge the ops user's kill switch, and no service log reports a permissions violation."""
    factory = ServiceFactory(tmp_path, secure_nats.url, database_url)
    api_port = free_port()
    factory.configure({"market_data": {"synthetic": {"ticks_per_s": 50}}})
    ops = Bus(secure_nats.url, "ops", _metrics(), user="ops", password=passwords["ops"])
    watcher = Bus(secure_nats.url, "ops_api", _metrics(), user="ops_api", password=passwords["ops_api"])
    as_signal = Bus(secure_nats.url, "signal", _metrics(), user="signal", password=passwords["signal"])
    seen: dict[str, int] = {"tick": 0, "verdict": 0, "order": 0, "fill": 0}
    last_tick: list[Tick] = []
    acks: list[KillSwitchAcknowledged] = []
    beats: set[str] = set()

    def counter(kind: str):
        async def handler(msg, subject: str) -> None:
            seen[kind] += 1
            if isinstance(msg, Tick):
                last_tick[:] = [msg]
        return handler

    async def on_beat(hb: Heartbeat, subject: str) -> None:
        beats.add(hb.service)

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    try:
        for name in ("ops_api", "risk", "execution", "signal", "market_data"):
            factory.start(name, env={"BNML_NATS__USER": name, "BNML_NATS__PASSWORD": passwords[name],
                                     "BNML_OPS_API__PORT": str(api_port)})
        for b in (watcher, ops, as_signal):
            await b.connect(retry_initial=False)
        await watcher.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, on_beat)
        await watcher.subscribe(subjects.ALL_TICKS, Tick, counter("tick"))
        await watcher.subscribe(subjects.ALL_VERDICTS, RiskVerdict, counter("verdict"))
        await watcher.subscribe(subjects.ALL_ORDERS, OrderEvent, counter("order"))
        await watcher.subscribe(subjects.ALL_FILLS, Fill, counter("fill"))
        await ops.subscribe(subjects.ALL_KILL_SWITCH_ACKS, KillSwitchAcknowledged, on_ack)
        await wait_until(lambda: beats >= set(SERVICES), timeout=45, message="heartbeats from all five services")
        await wait_until(lambda: seen["tick"] >= 10, timeout=30, message="ticks from market_data")

        async def verdict_seen() -> bool:
            if seen["verdict"]:
                return True
            t = last_tick[0]  # a signal at the market, as the signal service would send it
            await as_signal.publish(subjects.signal(t.symbol), Signal(
                ts=utcnow(), symbol=t.symbol, side="BUY", probability=0.9, expected_edge_bps=50,
                model_version="deploy-test", price=t.last, tick_id=t.id, tick_ts=t.ts))
            return False

        await wait_until(verdict_seen, timeout=45, interval=0.5, message="a verdict published by risk (JetStream)")

        # the operators' CLI, as docs/deploy.md says: NATS_URL with the `ops` user's credentials
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BNML_", "NATS_"))}
        env["NATS_URL"] = url_with_user(secure_nats.url, "ops", passwords["ops"])
        res = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bnml.cli", "kill-switch", "engage",
                                                       "--reason", "deploy test"],
                                      capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        cli = json.loads(res.stdout[res.stdout.index("{"):])
        assert {"risk", "execution"} <= set(cli["acknowledged_by"]), res.stdout + res.stderr
        await wait_until(lambda: {a.service for a in acks if a.command_id == cli["command_id"]} >= {"risk", "execution"},
                         timeout=20, message="the acks seen by the ops user too")
        for proc in factory.started:
            assert proc.alive, f"{proc.name} died:\n{proc.logs()[-2000:]}"
            assert "permissions violation" not in proc.logs().lower(), f"{proc.name} hit a permissions violation"
    finally:
        for b in (as_signal, ops, watcher):
            await b.drain()
        factory.stop_all()

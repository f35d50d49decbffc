"""Risk comes back as it left: breakers, budgets and positions after a restart; a kill switch engaged while
it was down is honoured (and audited) when it returns."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.contracts import KillSwitchCommand, utcnow
from libs.common.kill_switch import sign
from tests.helpers import RELEASE_KEY, wait_heartbeat, wait_until
from tests.kit.risk import RISK_TEST_CONFIG, Collector, Feeder, count, fill, kv

pytestmark = pytest.mark.integration


def _bnml(cwd, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def restart(services, bus) -> None:
    """Start risk again and wait until this instance (not the last run: `ServiceProcess._mine`) heartbeats as
    the writer taking work."""
    proc = services.start("risk")
    await proc.wait_writer(bus)


async def test_restarted_risk_comes_back_with_its_breakers_budgets_and_positions(
    services, bus, database_url, tmp_path
):
    services.configure(
        {**RISK_TEST_CONFIG, "risk": {**RISK_TEST_CONFIG["risk"], "daily_loss_budget_usdt": 1}}
    )
    risk = services.start("risk")
    seen = await Collector().attach(bus)
    async with Feeder(bus):
        await seen.ask_until(bus, lambda v: v.approved)
        for f in (
            fill("ETH/USDT", "BUY", "0.02", "3000", 1),
            fill("BTC/USDT", "BUY", "0.001", "60000", 2),
            fill("BTC/USDT", "SELL", "0.001", "58000", 3),
        ):
            await bus.publish(subjects.fill(f.symbol), f)
        await wait_until(
            lambda: "daily_loss" in (kv(database_url, "account_state") or {}).get("active_breakers", {}),
            timeout=20,
            message="daily_loss in the persisted account state",
        )
        before = kv(database_url, "account_state")
        assert risk.stop() == 0
        # a fill while risk is down: kept by JetStream, applied once when risk returns
        late = fill("ETH/USDT", "SELL", "0.01", "3000", 4)
        await bus.publish(subjects.fill(late.symbol), late)
        await restart(services, bus)
        buy = await seen.ask(bus, "ETH/USDT", "BUY")
        assert not buy.approved and "trading_reducing" in buy.reasons
        await wait_until(
            lambda: kv(database_url, "account_state")["fills_applied"] == 4,
            timeout=20,
            message="the fill published while risk was down applied",
        )
    after = kv(database_url, "account_state")
    assert after["trading_state"] == "REDUCING"
    assert after["active_breakers"]["daily_loss"].startswith("daily realized")
    since = {b["breaker"]: b["since"] for b in after["breakers"]}
    assert since["daily_loss"] == {b["breaker"]: b["since"] for b in before["breakers"]}["daily_loss"]
    assert Decimal(after["daily_realized_usdt"]) < Decimal(
        before["daily_realized_usdt"]
    )  # + the late sell's fee
    assert after["positions"] == {"ETH/USDT": "0.01"}
    assert count(database_url, "SELECT count(*) FROM risk_fill_ledger") == 4
    assert count(database_url, "SELECT count(*) FROM risk_breaker_events WHERE breaker = 'daily_loss'") == 1
    # `bnml state` reads the same from Postgres, with the services stopped
    services.stop_all()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_") and k != "NATS_URL"}
    env["DATABASE_URL"] = database_url
    out = await asyncio.to_thread(_bnml, tmp_path, env, "state")
    assert out.returncode == 0, out.stderr
    assert "trading REDUCING" in out.stdout and "daily_loss" in out.stdout and "ETH/USDT" in out.stdout
    as_json = await asyncio.to_thread(_bnml, tmp_path, env, "state", "--json")
    data = json.loads(as_json.stdout)
    assert data["account_state"]["daily_realized_usdt"] == after["daily_realized_usdt"]
    assert data["trading_state"]["state"] == "REDUCING"


async def test_kill_switch_engaged_while_risk_is_down_is_honoured_when_it_returns(
    services, bus, database_url
):
    services.configure(RISK_TEST_CONFIG)
    risk = services.start("risk")
    seen = await Collector().attach(bus)
    async with Feeder(bus):
        await seen.ask_until(bus, lambda v: v.approved)
        risk.stop()
        cmd = KillSwitchCommand(
            ts=utcnow(), action="engage", reason="engaged while risk was down", actor="test"
        )
        await bus.publish(subjects.kill_switch(), cmd)
        await restart(services, bus)
        hb = await wait_heartbeat(bus, "risk")
        assert hb.status == "halted"
        v = await seen.ask(bus)
        assert not v.approved and "kill_switch_engaged" in v.reasons and v.trading_state == "HALTED"
        assert kv(database_url, "trading_state")["state"] == "HALTED"
        assert (
            count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE command_id = %s", cmd.id) == 1
        )
        # nothing releases it but an operator command with a reason
        release = sign(
            KillSwitchCommand(ts=utcnow(), action="release", reason="all clear", actor="test"), RELEASE_KEY
        )
        await bus.publish(subjects.kill_switch(), release)
        await seen.ask_until(bus, lambda v: v.approved)
    assert kv(database_url, "trading_state")["state"] == "ACTIVE"

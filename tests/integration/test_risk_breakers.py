"""Risk on real NATS and Postgres: a breaker trips and approvals stop; an order loop halts with SEV-1."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

from libs.common import subjects
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, utcnow
from libs.common.kill_switch import sign
from tests.helpers import RELEASE_KEY, wait_heartbeat, wait_until
from tests.kit.risk import RISK_TEST_CONFIG, Collector, Feeder, count, fill, kv

pytestmark = pytest.mark.integration


async def test_daily_loss_breaker_trips_and_buys_stop_while_sells_still_pass(services, bus, database_url):
    services.configure(
        {**RISK_TEST_CONFIG, "risk": {**RISK_TEST_CONFIG["risk"], "daily_loss_budget_usdt": 1}}
    )
    services.start("risk")
    seen = await Collector().attach(bus)
    async with Feeder(bus):
        first = await seen.ask_until(bus, lambda v: v.approved)
        assert first.quantity > 0 and first.price_limit > 0 and first.expires_at > first.ts
        # a losing round trip on BTC and a position in ETH, as execution would report them
        for f in (
            fill("ETH/USDT", "BUY", "0.01", "3000", 1),
            fill("BTC/USDT", "BUY", "0.001", "60000", 2),
            fill("BTC/USDT", "SELL", "0.001", "58000", 3),
        ):
            await bus.publish(subjects.fill(f.symbol), f)
        await wait_until(
            lambda: any(t.breaker == "daily_loss" for t in seen.trips),
            timeout=20,
            message="daily_loss tripped on the bus",
        )
        trip = next(t for t in seen.trips if t.breaker == "daily_loss")
        assert trip.effect == "REDUCING" and trip.until is not None
        buy = await seen.ask(bus, "BTC/USDT", "BUY")
        assert not buy.approved and "trading_reducing" in buy.reasons and buy.trading_state == "REDUCING"
        sell = await seen.ask(bus, "ETH/USDT", "SELL")
        assert sell.approved and sell.quantity == Decimal("0.01")  # closing what is held still passes
        hb = await wait_heartbeat(bus, "risk")
        expected = (
            'bnml_risk_verdicts_total{outcome="refused",reason="trading_reducing"} 1.0',
            'bnml_risk_breakers_active{breaker="daily_loss"} 1.0',
            'bnml_risk_trading_state{state="REDUCING"} 1.0',
            'bnml_risk_trading_state_changes_total{state="REDUCING"} 1.0',
        )

        async def metrics_show_it() -> bool:
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{hb.metrics_port}/metrics")).text
            timed = re.search(r"^bnml_risk_signal_to_verdict_seconds_count [1-9]", text, re.M)
            return timed is not None and all(line in text for line in expected)

        await wait_until(
            metrics_show_it, timeout=10, message="the breaker, the refusal and decision timings in /metrics"
        )
    acct = kv(database_url, "account_state")
    assert Decimal(acct["daily_realized_usdt"]) < -2 and "daily_loss" in acct["active_breakers"]
    assert acct["positions"] == {"ETH/USDT": "0.01"}
    assert kv(database_url, "trading_state")["state"] == "REDUCING"
    assert count(database_url, "SELECT count(*) FROM risk_breaker_events WHERE breaker = 'daily_loss'") == 1
    assert count(database_url, "SELECT count(*) FROM risk_trading_state_events WHERE state = 'REDUCING'") >= 1
    assert count(database_url, "SELECT count(*) FROM risk_fill_ledger") == 3
    assert any(s.state == "REDUCING" for s in seen.states)


async def test_order_loop_halts_raises_sev1_and_a_release_waits_for_the_loop_to_clear(
    services, bus, database_url
):
    services.configure(
        {
            **RISK_TEST_CONFIG,
            "risk": {
                **RISK_TEST_CONFIG["risk"],
                "order_loop_trip_per_10s": 4,
                "max_orders_per_10s": 20,
                "max_orders_per_10s_per_symbol": 2,
            },
        }
    )
    services.start("risk")
    seen = await Collector().attach(bus)
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(a: KillSwitchAcknowledged, s: str) -> None:
        acks.append(a)

    await bus.subscribe(subjects.kill_switch_ack("risk"), KillSwitchAcknowledged, on_ack)
    async with Feeder(bus):
        await seen.ask_until(bus, lambda v: v.approved)
        verdicts = [await seen.ask(bus, sym) for sym in ("BTC/USDT", "ETH/USDT", "ETH/USDT", "BTC/USDT")]
        assert [v.approved for v in verdicts[:2]] == [True, True]
        assert verdicts[2].reasons == ["order_loop"]  # the 4th would-be order in 10 s
        assert verdicts[3].trading_state == "HALTED" and not verdicts[3].approved
        await wait_until(
            lambda: any(a.severity == "SEV-1" and "loop" in a.title for a in seen.alerts),
            message="a SEV-1 alert for the order loop",
        )
        after = await seen.ask(bus, "ETH/USDT", "SELL")
        assert not after.approved and "trading_halted" in after.reasons
        hb = await wait_heartbeat(bus, "risk")
        assert hb.status == "halted"
        # an operator release while the loop is still in its window: trading stays HALTED
        rel = sign(
            KillSwitchCommand(ts=utcnow(), action="release", reason="looked at it", actor="test"), RELEASE_KEY
        )
        await bus.publish(subjects.kill_switch(), rel)
        await wait_until(lambda: any(a.command_id == rel.id for a in acks), message="release acknowledged")
        assert "stays HALTED" in next(a for a in acks if a.command_id == rel.id).detail
        assert kv(database_url, "trading_state")["state"] == "HALTED"
        # once the window has drained, a release resumes (REDUCING first: cooldown after a breaker clears)
        await wait_until(
            lambda: "order_loop" not in (kv(database_url, "account_state") or {}).get("active_breakers", {}),
            timeout=25,
            message="order_loop cleared",
        )
        assert kv(database_url, "trading_state")["state"] == "HALTED"
        rel2 = sign(
            KillSwitchCommand(ts=utcnow(), action="release", reason="loop fixed", actor="test"), RELEASE_KEY
        )
        await bus.publish(subjects.kill_switch(), rel2)
        await wait_until(lambda: kv(database_url, "trading_state")["state"] != "HALTED", message="released")
    assert count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE action = 'release'") == 2
    assert count(database_url, "SELECT count(*) FROM risk_breaker_events WHERE breaker = 'order_loop'") == 2

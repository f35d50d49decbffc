"""End to end on real NATS and Postgres: ticks become journaled paper fills; the kill switch stops them."""

from __future__ import annotations

import psycopg
import pytest

from libs.common import subjects
from libs.common.contracts import DeadLetter, KillSwitchAcknowledged, KillSwitchCommand, utcnow
from tests.helpers import verdicts_settled, wait_heartbeat, wait_until

pytestmark = pytest.mark.integration

FAST = {"market_data": {"synthetic": {"ticks_per_s": 50}}, "signal": {"every_nth_tick": 10}}


def count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchone()[0]


async def test_synthetic_ticks_become_journaled_paper_fills(services, database_url, bus):
    services.configure(FAST)
    for name in ("risk", "execution", "signal", "market_data"):
        services.start(name)
    await wait_until(
        lambda: count(database_url, "SELECT count(*) FROM fills") >= 3,
        timeout=30,
        message="three paper fills in the journal",
    )
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT o.status, o.quantity, f.price, f.fee, f.quantity * f.price * 0.001 AS expected_fee"
            " FROM orders o JOIN fills f USING (client_order_id) LIMIT 3"
        ).fetchall()
    for status, qty, price, fee, expected_fee in rows:
        assert status == "FILLED"
        assert qty > 0 and price > 0
        assert abs(fee - expected_fee) < 1e-6  # Binance taker fee, 0.1 %


async def test_invalid_message_goes_to_dlq_and_service_keeps_serving(services, bus):
    risk = services.start("risk")
    letters: list[DeadLetter] = []

    async def on_dead(letter: DeadLetter, subject: str) -> None:
        letters.append(letter)

    await bus.subscribe("dlq.>", DeadLetter, on_dead)
    await bus.nc.publish(subjects.signal("BTC/USDT"), b'{"not": "a signal"')
    await bus.nc.publish(subjects.signal("BTC/USDT"), b'{"ts": "2026-01-01T00:00:00Z", "unknown_field": 1}')
    await wait_until(lambda: len(letters) >= 2, message="two dead letters")
    assert {letter.subject for letter in letters} == {"signal.BTCUSDT"}
    assert all(letter.service == "risk" and letter.reason for letter in letters)
    assert "unknown_field" in letters[1].reason or "unknown_field" in letters[0].reason
    hb = await wait_heartbeat(bus, "risk")
    assert risk.alive and hb.counters.get("dlq") == 2


async def _engage(bus, reason: str) -> KillSwitchCommand:
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason=reason, actor="test")
    await bus.publish(subjects.kill_switch(), cmd)
    return cmd


async def test_kill_switch_stops_new_orders(services, database_url, bus):
    services.configure(FAST)
    for name in ("risk", "execution", "signal", "market_data"):
        services.start(name)
    await wait_until(
        lambda: count(database_url, "SELECT count(*) FROM orders") >= 1, timeout=30, message="a first order"
    )
    acks: dict[str, KillSwitchAcknowledged] = {}

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks[ack.service] = ack

    await bus.subscribe(subjects.ALL_KILL_SWITCH_ACKS, KillSwitchAcknowledged, on_ack)
    cmd = await _engage(bus, "integration test")
    await wait_until(lambda: {"risk", "execution"} <= set(acks), message="acks from risk and execution")
    assert acks["execution"].command_id == cmd.id and acks["execution"].open_orders == 0
    after_ack = count(database_url, "SELECT count(*) FROM orders")
    # signals keep flowing: risk refuses more of them (its heartbeat's total), execution decides what came out;
    # then no order may have been journaled
    refused = (await wait_heartbeat(bus, "risk")).counters.get("verdicts_refused", 0)
    await wait_heartbeat(
        bus, "risk", timeout=30, where=lambda hb: hb.counters.get("verdicts_refused", 0) > refused
    )
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the verdicts decided")
    assert count(database_url, "SELECT count(*) FROM orders") == after_ack
    assert count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE action = 'engage'") == 1


async def test_service_started_after_engage_comes_up_halted(services, database_url, bus):
    await _engage(bus, "engaged before anyone started")
    services.configure(FAST)
    for name in ("risk", "execution", "signal", "market_data"):
        services.start(name)
    hb = await wait_heartbeat(bus, "execution")
    assert hb.status == "halted"
    # signals flow and risk refuses them (its heartbeat's total); execution decides what came out
    hb = await wait_heartbeat(
        bus, "risk", timeout=30, where=lambda hb: hb.counters.get("verdicts_refused", 0) > 0
    )
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the verdicts decided")
    assert count(database_url, "SELECT count(*) FROM orders") == 0
    assert hb.status == "halted" and hb.counters.get("verdicts_refused", 0) > 0

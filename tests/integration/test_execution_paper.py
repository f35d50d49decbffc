"""Execution in paper mode on real NATS and Postgres: journal first, never twice, the kill switch wins."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from libs.common import subjects
from libs.common.contracts import (
    Fill,
    Heartbeat,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    OrderEvent,
    RiskVerdict,
    Tick,
    utcnow,
)
from libs.common.kill_switch import sign
from services.execution.core import client_order_id
from tests.helpers import (
    RELEASE_KEY,
    publish_tick,
    tick_barrier,
    verdicts_settled,
    wait_heartbeat,
    wait_until,
)

pytestmark = pytest.mark.integration
D = Decimal


def rows(database_url: str, sql: str, *args) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def one(database_url: str, sql: str, *args):
    r = rows(database_url, sql, *args)
    return next(iter(r[0].values())) if r else None


def verdict(side="BUY", qty="0.01", limit="60000", ttl_s=30.0, symbol="BTC/USDT") -> RiskVerdict:
    now = utcnow()
    return RiskVerdict(
        ts=now,
        signal_id="sig-" + now.strftime("%H%M%S%f"),
        symbol=symbol,
        side=side,
        approved=True,
        quantity=D(qty),
        price_limit=D(limit),
        expires_at=now + timedelta(seconds=ttl_s),
        tick_ts=now,
    )


async def send_tick(bus, bid="50000", ask="50001", volume="5", symbol="BTC/USDT") -> None:
    await publish_tick(
        bus, Tick(ts=utcnow(), symbol=symbol, bid=D(bid), ask=D(ask), last=D(bid), volume=D(volume))
    )


async def release(bus) -> None:
    await bus.publish(
        subjects.kill_switch(),
        sign(KillSwitchCommand(ts=utcnow(), action="release", reason="test", actor="test"), RELEASE_KEY),
    )


async def start_execution(services, bus, overrides: dict | None = None):
    services.configure(
        {"execution": {"slippage_bps": 0, "slippage_bps_per_10k_usdt": 0, **(overrides or {})}}
    )
    return services.start("execution")


async def test_approved_verdict_becomes_one_journaled_paper_fill_with_books_updated(
    services, database_url, bus
):
    fills: list[Fill] = []

    async def on_fill(f: Fill, subject: str) -> None:
        fills.append(f)

    await bus.subscribe(subjects.ALL_FILLS, Fill, on_fill)
    await start_execution(services, bus)
    await send_tick(bus)
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    v = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM fills") == 1, timeout=20, message="one fill"
    )
    order = rows(database_url, "SELECT * FROM orders")[0]
    assert order["client_order_id"] == client_order_id(v.id) and order["status"] == "FILLED"
    fill = rows(database_url, "SELECT * FROM fills")[0]
    assert fill["price"] == D("50001") and fill["fee"] == D("0.50001000") and fill["fee_asset"] == "USDT"
    bal = {r["asset"]: r["free"] for r in rows(database_url, "SELECT * FROM balances")}
    assert bal["BTC"] == D("0.01") and bal["USDT"] == D("10000") - D("500.01") - D("0.50001")
    pos = rows(database_url, "SELECT * FROM positions WHERE symbol = 'BTC/USDT'")[0]
    assert pos["quantity"] == D("0.01")
    await wait_until(lambda: len(fills) == 1, message="the fill published")
    assert fills[0].client_order_id == order["client_order_id"]


async def test_redelivered_or_republished_verdict_makes_one_order(services, database_url, bus):
    await start_execution(services, bus)
    await send_tick(bus)
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    v = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    # the same verdict again, under another Nats-Msg-Id so JetStream cannot drop it as a duplicate
    await bus.publish_raw(subjects.verdict("BTC/USDT"), v.model_dump_json().encode(), msg_id="republish-1")
    await bus.publish_raw(subjects.verdict("BTC/USDT"), v.model_dump_json().encode(), msg_id="republish-2")
    marker = verdict(qty="0.02")
    await bus.publish(subjects.verdict("BTC/USDT"), marker)
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", marker.id) == 1,
        timeout=20,
        message="the marker verdict journaled (all earlier ones handled)",
    )
    assert one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", v.id) == 1
    assert one(database_url, "SELECT count(*) FROM fills") == 2


async def test_expired_verdict_makes_no_order(services, database_url, bus):
    await start_execution(services, bus)
    await send_tick(bus)
    stale = verdict(ttl_s=-1)
    await bus.publish(subjects.verdict("BTC/USDT"), stale)
    marker = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), marker)
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", marker.id) == 1,
        timeout=20,
        message="the fresh verdict journaled",
    )
    assert one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", stale.id) == 0


async def test_sell_beyond_holdings_is_rejected_with_reason(services, database_url, bus):
    await start_execution(services, bus)
    await send_tick(bus)
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    v = verdict(side="SELL", qty="1", limit="40000")
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    await wait_until(
        lambda: one(database_url, "SELECT status FROM orders") == "REJECTED",
        timeout=20,
        message="a rejected order",
    )
    assert one(database_url, "SELECT reason FROM orders").startswith("insufficient_balance")
    assert one(database_url, "SELECT count(*) FROM fills") == 0


async def test_kill_switch_cancels_resting_limits_and_refuses_verdicts_after_it(services, database_url, bus):
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    await bus.subscribe(subjects.kill_switch_ack("execution"), KillSwitchAcknowledged, on_ack)
    await start_execution(services, bus, {"order_type": "limit"})
    await send_tick(bus, bid="50000", ask="50010")
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    resting = verdict(limit="49000")  # below the ask: rests
    await bus.publish(subjects.verdict("BTC/USDT"), resting)
    await wait_until(
        lambda: one(database_url, "SELECT status FROM orders") == "ACCEPTED",
        timeout=20,
        message="a resting limit order",
    )
    assert one(database_url, "SELECT locked FROM balances WHERE asset = 'USDT'") > 0
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason="test", actor="test")
    await bus.publish(subjects.kill_switch(), cmd)
    await wait_until(
        lambda: any(a.command_id == cmd.id for a in acks), timeout=20, message="the execution ack"
    )
    ack = next(a for a in acks if a.command_id == cmd.id)
    assert ack.open_orders == 0 and "zero open orders confirmed" in ack.detail
    assert one(database_url, "SELECT status FROM orders") == "CANCELLED"
    assert one(database_url, "SELECT locked FROM balances WHERE asset = 'USDT'") == 0
    late = verdict(limit="60000")  # approved, fresh, marketable: must still not be sent
    await bus.publish(subjects.verdict("BTC/USDT"), late)
    hb = await wait_heartbeat(bus, "execution")
    assert hb.status == "halted"
    # the late verdict decided (refused, acked) before we look; the resting order above is the control
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the late verdict decided")
    assert one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", late.id) == 0
    assert one(database_url, "SELECT count(*) FROM fills") == 0


async def test_kill_switch_with_flatten_sells_the_position(services, database_url, bus):
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    await bus.subscribe(subjects.kill_switch_ack("execution"), KillSwitchAcknowledged, on_ack)
    await start_execution(services, bus)
    await send_tick(bus)
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    await bus.publish(subjects.verdict("BTC/USDT"), verdict(qty="0.02"))
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM fills") == 1, timeout=20, message="a buy"
    )
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason="flatten test", actor="test", flatten=True)
    await bus.publish(subjects.kill_switch(), cmd)
    await wait_until(
        lambda: any(a.command_id == cmd.id for a in acks), timeout=20, message="the execution ack"
    )
    ack = next(a for a in acks if a.command_id == cmd.id)
    assert ack.open_orders == 0 and "flattened: BTC/USDT filled" in ack.detail
    assert one(database_url, "SELECT quantity FROM positions WHERE symbol = 'BTC/USDT'") == 0
    sell = rows(database_url, "SELECT * FROM orders WHERE purpose = 'flatten'")[0]
    assert sell["side"] == "SELL" and sell["status"] == "FILLED"
    realized = one(
        database_url,
        "SELECT realized_pnl_usdt FROM fills WHERE client_order_id = %s",
        sell["client_order_id"],
    )
    # bought at 50001, sold at 50000, fees 0.1 % each way
    assert realized == D("0.02") * (D("50000") - D("50001")) - D("0.02") * (D("50001") + D("50000")) * D(
        "0.001"
    )


async def test_restart_between_journal_and_send_reconciles_without_duplicate(services, database_url, bus):
    v = verdict()
    coid = client_order_id(v.id)
    # A previous run journaled this verdict and died before the paper match (and before acking it).
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, price_limit, status,"
            " mode) VALUES (%s, %s, 'BTC/USDT', 'BUY', 0.01, 60000, 'SUBMITTED', 'paper')",
            (coid, v.id),
        )
    await bus.publish(subjects.verdict("BTC/USDT"), v)  # still in the stream: it will be redelivered
    await start_execution(services, bus)
    await send_tick(bus)
    marker = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), marker)
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", marker.id) == 1,
        timeout=20,
        message="the next verdict journaled",
    )
    assert rows(database_url, "SELECT status FROM orders WHERE verdict_id = %s", v.id) == [
        {"status": "REJECTED"}
    ]
    assert one(database_url, "SELECT count(*) FROM orders WHERE verdict_id = %s", v.id) == 1
    assert one(database_url, "SELECT count(*) FROM fills WHERE client_order_id = %s", coid) == 0


async def test_resting_paper_order_survives_a_restart_and_fills_after_it(services, database_url, bus):
    proc = await start_execution(services, bus, {"order_type": "limit"})
    await send_tick(bus, bid="50000", ask="50010")
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    await bus.publish(subjects.verdict("BTC/USDT"), verdict(qty="0.03", limit="49000"))
    await wait_until(
        lambda: one(database_url, "SELECT status FROM orders") == "ACCEPTED",
        timeout=20,
        message="a resting limit order",
    )
    assert proc.stop() == 0
    await services.start("execution").wait_writer(bus)  # this run's heartbeat as the writer taking verdicts
    await send_tick(bus, bid="48990", ask="48995", volume="0.01")  # crosses; volume allows 0.01 of 0.03
    await wait_until(
        lambda: one(database_url, "SELECT status FROM orders") == "PARTIALLY_FILLED",
        timeout=20,
        message="a partial fill after the restart",
    )
    await send_tick(bus, bid="48990", ask="48995", volume="1")
    await wait_until(
        lambda: one(database_url, "SELECT status FROM orders") == "FILLED", timeout=20, message="filled"
    )
    fills = rows(database_url, "SELECT * FROM fills ORDER BY id")
    assert [f["quantity"] for f in fills] == [D("0.01"), D("0.02")] and all(
        f["price"] == D("49000") for f in fills
    )
    assert one(database_url, "SELECT locked FROM balances WHERE asset = 'USDT'") == 0
    assert one(database_url, "SELECT free FROM balances WHERE asset = 'BTC'") == D("0.03")


async def test_two_instances_only_one_sends_and_the_standby_takes_over(services, database_url, bus):
    events: list[OrderEvent] = []

    async def on_order(e: OrderEvent, subject: str) -> None:
        events.append(e)

    await bus.subscribe(subjects.ALL_ORDERS, OrderEvent, on_order)
    services.configure({"execution": {"lock_check_interval_s": 0.2}})
    beats: dict[str, Heartbeat] = {}

    async def on_beat(hb: Heartbeat, subject: str) -> None:
        beats[hb.instance] = hb

    await bus.subscribe(subjects.heartbeat("execution"), Heartbeat, on_beat)
    first = services.start("execution")
    second = services.start("execution")
    await send_tick(bus)
    await second.wait_heartbeat(
        bus, lambda hb: hb.detail.startswith("standby"), timeout=20, message="standing by"
    )
    await wait_until(lambda: len(beats) == 2, timeout=20, message="heartbeats from both instances")
    assert sorted(hb.detail.split(":")[0] for hb in beats.values()) == ["standby", "writer (paper)"]
    for _ in range(3):
        await bus.publish(subjects.verdict("BTC/USDT"), verdict())
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM fills") == 3, timeout=20, message="3 fills"
    )
    senders = {r["sent_by"] for r in rows(database_url, "SELECT sent_by FROM orders")}
    assert len(senders) == 1
    first.kill()  # the writer dies; its lock session ends with it
    await second.wait_writer(bus, timeout=30)  # the standby taking over: its heartbeat as the writer
    await send_tick(bus)
    await bus.publish(subjects.verdict("BTC/USDT"), verdict())
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM fills") == 4,
        timeout=30,
        message="the fourth fill by the new writer",
    )
    senders2 = {r["sent_by"] for r in rows(database_url, "SELECT sent_by FROM orders")}
    assert len(senders2) == 2


async def test_kill_switch_during_an_in_flight_order_waits_for_it_then_confirms_zero_open(
    services, database_url, bus
):
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    await bus.subscribe(subjects.kill_switch_ack("execution"), KillSwitchAcknowledged, on_ack)
    await start_execution(services, bus, {"paper_latency_ms": 1500, "order_type": "limit"})
    await send_tick(bus, bid="50000", ask="50010")
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    in_flight, queued = verdict(limit="49000"), verdict(limit="49000")
    await bus.publish(subjects.verdict("BTC/USDT"), in_flight)
    await bus.publish(subjects.verdict("BTC/USDT"), queued)
    await wait_until(
        lambda: (
            one(database_url, "SELECT status FROM orders WHERE verdict_id = %s", in_flight.id) == "SUBMITTED"
        ),
        timeout=20,
        message="the first order in flight",
    )
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason="race", actor="test")
    await bus.publish(subjects.kill_switch(), cmd)
    await wait_until(lambda: any(a.command_id == cmd.id for a in acks), timeout=20, message="the ack")
    ack = next(a for a in acks if a.command_id == cmd.id)
    # the in-flight limit order reached the book during the latency, and the sweep cancelled it
    assert ack.open_orders == 0
    assert one(database_url, "SELECT status FROM orders WHERE verdict_id = %s", in_flight.id) == "CANCELLED"
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the queued verdict decided")
    assert (
        one(
            database_url,
            "SELECT count(*) FROM orders WHERE verdict_id = %s AND status <> 'REJECTED'",
            queued.id,
        )
        == 0
    )
    assert one(database_url, "SELECT count(*) FROM orders WHERE status IN ('ACCEPTED', 'SUBMITTED')") == 0

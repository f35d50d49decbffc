"""Scenario 9: exchange faults through the fake Binance server, with execution in live mode.

The real `python -m services.execution` runs with `mode: live` against the local fake (the real ccxt
inside it, only the base URL overridden). For every fault: no duplicate at the exchange, no crash, and
the journal ends in the right state.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from libs.common import subjects
from tests.fakes.binance import FakeBinance
from tests.helpers import wait_until
from tests.kit.execution import PRICE, make_verdict, query, stamp_risk_writer

pytestmark = pytest.mark.faults

OPEN = ("SUBMITTED", "UNKNOWN", "ACCEPTED", "PARTIALLY_FILLED", "NEW")

# (fault kind, params, journal status expected, orders the exchange should hold for the verdict)
CASES = [
    ("accept_timeout", {"seconds": 3.0}, "FILLED", 1),
    ("accept_5xx", {"status": 502}, "FILLED", 1),
    ("unknown_status", {"code": -1006, "accept": True, "status": 503}, "FILLED", 1),
    ("429", {"retry_after": 1, "count": 3}, "FILLED", 1),
    ("clock_skew", {}, "FILLED", 1),
    ("418", {"retry_after": 2, "ban_seconds": 2}, None, None),  # ends filled or refused, never twice
    ("insufficient_balance", {}, "REJECTED", 0),
    ("filter_failure", {"filter": "LOT_SIZE"}, "REJECTED", 0),
]


@pytest.fixture
def fake():
    server = FakeBinance.run_in_thread()
    try:
        yield server
    finally:
        server.close()


def _journal(database_url: str, verdict_id: str) -> tuple[str, str, str] | None:
    rows = query(
        database_url,
        "SELECT client_order_id, status, reason FROM orders WHERE verdict_id = %s",
        (verdict_id,),
    )
    return rows[0] if rows else None


async def test_every_exchange_fault_ends_with_at_most_one_order_and_the_right_state(
    services, bus, database_url, fake
):
    fake.set_book("BTCUSDT", PRICE - Decimal("0.5"), PRICE + Decimal("0.5"))
    services.configure(
        {
            "mode": "live",
            "live": {"confirm": True},
            "execution": {
                "live_api_url": fake.http_url,
                "request_timeout_ms": 1500,
                "unknown_backoff_max_s": 1.0,
                "reconcile_interval_s": 5,
            },
        }
    )
    services.extra_env.update(BNML_LIVE__API_KEY=fake.api_key, BNML_LIVE__API_SECRET=fake.secret)
    stamp_risk_writer(database_url)  # the test plays a fenced risk writer (live refuses epoch 0)
    execution = services.start("execution")
    for kind, params, expected, at_exchange in CASES:
        fake.faults.clear()
        count = params.pop("count", 1)
        fake.faults.next("POST /api/v3/order", kind, count=count, **params)
        if kind == "accept_timeout":  # Binance's eventual consistency: not found for the first look-ups
            fake.faults.next("GET /api/v3/order", "order_not_found", count=2)
        v = make_verdict("BUY", ttl_s=60, epoch_of=database_url)
        await bus.publish(subjects.verdict(v.symbol), v)
        await wait_until(
            lambda v=v: (j := _journal(database_url, v.id)) and j[1] not in OPEN,
            timeout=60,
            message=f"{kind}: the order's outcome resolved",
        )
        coid, status, reason = _journal(database_url, v.id)
        placed = fake.orders_for(coid)
        assert len(placed) <= 1, f"{kind}: {len(placed)} orders at the exchange for one verdict"
        if expected is not None:
            assert status == expected, f"{kind}: journal says {status} ({reason})"
            assert len(placed) == at_exchange, (
                f"{kind}: {len(placed)} at the exchange, expected {at_exchange}"
            )
        if status == "REJECTED":
            assert reason, f"{kind}: a rejection without a reason"
        assert execution.alive, f"{kind}: execution died:\n{execution.logs()[-3000:]}"
        await asyncio.sleep(2.5 if kind == "418" else 0.2)  # let a ban run out before the next case
    logs = execution.logs()
    assert fake.secret not in logs and fake.api_key not in logs, "API keys leaked into the logs"


async def test_a_definite_refusal_after_a_successful_send_is_an_unknown_outcome_resolved_by_client_id(
    services, bus, database_url, fake
):
    """Issue 16.9: the exchange takes the order but its answer lacks the trades, and the trades look-up is
    refused (-1100, a 'definite' error): the order is at the exchange, so the outcome is unknown. It must
    not be dead-lettered nor left SUBMITTED: the symbol is held and the order resolved by client order id."""
    from libs.common.contracts import DeadLetter, Heartbeat
    from services.execution.core import client_order_id

    fake.set_book("BTCUSDT", PRICE - Decimal("0.5"), PRICE + Decimal("0.5"))
    services.configure(
        {
            "mode": "live",
            "live": {"confirm": True},
            "symbols": ["BTC/USDT"],
            "monitoring": {"heartbeat_interval_s": 0.2},
            "execution": {
                "live_api_url": fake.http_url,
                "request_timeout_ms": 1500,
                "unknown_backoff_max_s": 0.5,
                "reconcile_interval_s": 30,
            },
        }
    )
    services.extra_env.update(BNML_LIVE__API_KEY=fake.api_key, BNML_LIVE__API_SECRET=fake.secret)
    stamp_risk_writer(database_url)  # the test plays a fenced risk writer (live refuses epoch 0)
    execution = services.start("execution")
    dead: list[DeadLetter] = []
    held: list[str] = []

    async def on_dead(d: DeadLetter, subject: str) -> None:
        dead.append(d)

    async def on_heartbeat(hb: Heartbeat, subject: str) -> None:
        if hb.service == "execution" and "held: BTC/USDT" in hb.detail:
            held.append(hb.detail)

    await bus.subscribe(subjects.ALL_DLQ, DeadLetter, on_dead)
    await bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, on_heartbeat)
    v = make_verdict("BUY", ttl_s=60, epoch_of=database_url)
    coid = client_order_id(v.id)
    fake.faults.next("POST /api/v3/order", "result_only", where=lambda p: p.get("newClientOrderId") == coid)
    fake.faults.next(
        "GET /api/v3/myTrades",
        "error",
        status=400,
        code=-1100,
        msg="Illegal characters found in parameter 'orderId'.",
    )
    # Binance's eventual consistency keeps the look-up answering "does not exist" for a while: the hold shows
    fake.faults.next(
        "GET /api/v3/order", "order_not_found", count=4, where=lambda p: p.get("origClientOrderId") == coid
    )
    await bus.publish(subjects.verdict(v.symbol), v)
    await wait_until(
        lambda: (j := _journal(database_url, v.id)) and j[1] == "FILLED",
        timeout=30,
        message="the order resolved by its client order id",
    )
    assert held, "the symbol was never held while the outcome was unknown"
    assert len(fake.orders_for(coid)) == 1
    posts = [
        r
        for r in list(fake.requests)
        if r.method == "POST" and r.path == "/api/v3/order" and r.params.get("newClientOrderId") == coid
    ]
    assert len(posts) == 1, f"sent {len(posts)} times"
    fills = query(database_url, "SELECT sum(quantity) FROM fills WHERE client_order_id = %s", (coid,))
    assert fills[0][0] == v.quantity
    assert ("error", "GET", "/api/v3/myTrades") in fake.faults.fired, "the refusal never happened: no fault"
    assert not [d for d in dead if d.subject.startswith("risk.verdict")], "the verdict was dead-lettered"
    assert execution.alive, execution.logs()[-3000:]

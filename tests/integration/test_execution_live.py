"""Execution in live mode against the fake Binance server (the real ccxt.binance, pointed at it by URL):
every fault ends with exactly one order at the exchange per verdict, and never a second send."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from libs.common import subjects
from libs.common.contracts import Alert, KillSwitchAcknowledged, KillSwitchCommand, RiskVerdict, utcnow
from services.execution.core import client_order_id
from tests.fakes.binance import FakeBinance, make_exchange
from tests.helpers import verdicts_settled, wait_until
from tests.kit.execution import stamp_risk_writer

pytestmark = pytest.mark.integration
D = Decimal
BOOK = ("BTCUSDT", "50000", "50001")


def rows(database_url: str, sql: str, *args) -> list[dict]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def status_of(database_url: str, coid: str) -> str | None:
    r = rows(database_url, "SELECT status FROM orders WHERE client_order_id = %s", coid)
    return r[0]["status"] if r else None


# The epoch the test's risk writer stamps (`risk_writer` below): live execution refuses a verdict no fenced
# risk writer stamped.
RISK_EPOCH = 1


@pytest.fixture(autouse=True)
def risk_writer(database_url: str) -> int:
    """The test plays risk: one risk writer took the lock on this database (epoch RISK_EPOCH)."""
    epoch = stamp_risk_writer(database_url)
    assert epoch == RISK_EPOCH
    return epoch


def verdict(side="BUY", qty="0.001", limit="51000", ttl_s=60.0) -> RiskVerdict:
    now = utcnow()
    return RiskVerdict(
        ts=now,
        signal_id="sig-" + now.strftime("%H%M%S%f"),
        symbol="BTC/USDT",
        side=side,
        approved=True,
        quantity=D(qty),
        price_limit=D(limit),
        expires_at=now + timedelta(seconds=ttl_s),
        risk_epoch=RISK_EPOCH,
    )


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    f = FakeBinance.run_in_thread()
    f.set_book(*BOOK, bid_qty="5", ask_qty="5")
    yield f
    f.close()


def start_live(services, fake: FakeBinance, **execution):
    services.configure(
        {
            "mode": "live",
            "live": {"confirm": True},
            "symbols": ["BTC/USDT"],
            "execution": {
                "live_api_url": fake.http_url,
                "request_timeout_ms": 1500,
                "unknown_resolve_timeout_s": 6,
                "unknown_backoff_max_s": 0.5,
                "reconcile_interval_s": 2,
                "cancel_retry_interval_s": 0.2,
                **execution,
            },
        }
    )
    return services.start(
        "execution", env={"BNML_LIVE__API_KEY": fake.api_key, "BNML_LIVE__API_SECRET": fake.secret}
    )


# (fault kind, its parameters, orders the exchange should hold for the verdict, final journal status)
FAULTS = [
    ("accept_timeout", {"seconds": 4}, 1, "FILLED"),
    ("accept_5xx", {"status": 502}, 1, "FILLED"),
    ("unknown_status", {"code": -1006}, 1, "FILLED"),
    ("unknown_status", {"code": -1007}, 1, "FILLED"),
    ("disconnect", {"accept": True}, 1, "FILLED"),
    ("429", {"retry_after": 1}, 1, "FILLED"),
    ("clock_skew", {}, 1, "FILLED"),
    ("insufficient_balance", {}, 0, "REJECTED"),
    ("filter_failure", {"filter": "LOT_SIZE"}, 0, "REJECTED"),
    ("5xx", {"status": 503}, 0, "REJECTED"),  # not processed: unknown, then declared never placed
    ("418", {"retry_after": 1}, 0, "REJECTED"),
]


async def test_every_order_fault_ends_with_exactly_one_order_per_verdict(services, database_url, bus, fake):
    proc = start_live(services, fake)
    for kind, params, at_exchange, final in FAULTS:
        v = verdict()
        coid = client_order_id(v.id)
        fake.faults.next(
            "POST /api/v3/order", kind, where=lambda p, c=coid: p.get("newClientOrderId") == c, **params
        )
        if kind == "accept_timeout":  # and Binance says "does not exist" for a while after
            fake.faults.next(
                "GET /api/v3/order",
                "order_not_found",
                count=3,
                where=lambda p, c=coid: p.get("origClientOrderId") == c,
            )
        await bus.publish(subjects.verdict("BTC/USDT"), v)
        await wait_until(
            lambda c=coid, f=final: status_of(database_url, c) == f,
            timeout=40,
            message=f"{kind}: order {final}",
        )
        assert len(fake.orders_for(coid)) == at_exchange, kind
        posted = [r for r in fake.orders_received if r.get("newClientOrderId") == coid]
        if kind not in ("429", "clock_skew"):
            assert len(posted) <= 1, f"{kind}: sent twice"
        posts = [
            r
            for r in list(fake.requests)
            if r.method == "POST" and r.path == "/api/v3/order" and r.params.get("newClientOrderId") == coid
        ]
        if kind == "429":  # refused before execution: resent once, after the Retry-After it was given
            assert len(posts) == 2 and posts[1].monotonic - posts[0].monotonic >= 0.9
        if kind == "clock_skew":  # resent once, after the clock was resynchronised
            assert len(posts) == 2
            assert any(
                r.path == "/api/v3/time" and posts[0].monotonic < r.monotonic < posts[1].monotonic
                for r in list(fake.requests)
            )
        if final == "FILLED":
            fills = rows(database_url, "SELECT * FROM fills WHERE client_order_id = %s", coid)
            assert sum(f["quantity"] for f in fills) == D("0.001"), kind
            assert all(f["exchange"] == "binance" for f in fills)
        else:
            assert rows(database_url, "SELECT reason FROM orders WHERE client_order_id = %s", coid)[0][
                "reason"
            ]
        assert proc.alive, proc.logs()[-2000:]
    fired = {kind for kind, _, _ in fake.faults.fired}
    assert {k for k, *_ in FAULTS} <= fired, fired
    # the books agree with the exchange afterwards: a clean reconciliation after the last verdict
    last = rows(database_url, "SELECT max(id) AS id FROM exec_reconciliations")[0]["id"] or 0
    await wait_until(
        lambda: (
            rows(database_url, "SELECT count(*) AS n FROM exec_reconciliations WHERE id > %s", last)[0]["n"]
            >= 1
        ),
        timeout=20,
        message="a reconciliation",
    )
    latest = rows(database_url, "SELECT ok, findings FROM exec_reconciliations ORDER BY id DESC LIMIT 1")[0]
    assert latest["ok"], latest["findings"]
    logs = proc.logs()
    assert fake.secret not in logs and fake.api_key not in logs
    reasons = {
        r["reason"].split(":")[0]
        for r in rows(database_url, "SELECT reason FROM orders WHERE status = 'REJECTED'")
    }
    assert {"insufficient_funds", "invalid_order", "ip_banned"} <= reasons, reasons


async def test_kill_switch_cancels_every_open_order_at_the_exchange_and_refuses_later_verdicts(
    services, database_url, bus, fake
):
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    await bus.subscribe(subjects.kill_switch_ack("execution"), KillSwitchAcknowledged, on_ack)
    start_live(services, fake, order_type="limit")
    resting = verdict(limit="49000")
    await bus.publish(subjects.verdict("BTC/USDT"), resting)
    await wait_until(
        lambda: status_of(database_url, client_order_id(resting.id)) == "ACCEPTED",
        timeout=30,
        message="a resting limit at the exchange",
    )
    manual = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    try:
        await manual.load_markets()
        await manual.create_order("BTC/USDT", "limit", "buy", 0.001, 48000, {"newClientOrderId": "manual-1"})
    finally:
        await manual.close()
    assert len(fake.open_orders()) == 2
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason="test", actor="test")
    await bus.publish(subjects.kill_switch(), cmd)
    await wait_until(lambda: any(a.command_id == cmd.id for a in acks), timeout=30, message="the ack")
    ack = next(a for a in acks if a.command_id == cmd.id)
    assert ack.open_orders == 0 and "zero open orders confirmed" in ack.detail
    assert fake.open_orders() == []
    assert status_of(database_url, client_order_id(resting.id)) == "CANCELLED"
    late = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), late)
    # decided (refused, acked) before we look; the resting order cancelled above is the control
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the late verdict decided")
    assert status_of(database_url, client_order_id(late.id)) is None
    assert fake.orders_for(client_order_id(late.id)) == []


async def test_restart_between_journal_and_send_reconciles_without_duplicate(
    services, database_url, bus, fake
):
    never_sent, maybe_sent = verdict(), verdict()
    c1, c2 = client_order_id(never_sent.id), client_order_id(maybe_sent.id)
    # The previous run journaled both; it sent the second (the exchange has it) and died before recording it.
    with psycopg.connect(database_url) as conn:
        for v, coid, sent in ((never_sent, c1, False), (maybe_sent, c2, True)):
            conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, price_limit, status, mode,"
                " exchange, sent_at) VALUES (%s, %s, 'BTC/USDT', 'BUY', 0.001, 51000, 'SUBMITTED', 'live', 'binance',"
                " CASE WHEN %s THEN now() END)",
                (coid, v.id, sent),
            )
    ex = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    try:
        await ex.load_markets()
        await ex.create_order(
            "BTC/USDT", "limit", "buy", 0.001, 51000, {"newClientOrderId": c2, "timeInForce": "IOC"}
        )
    finally:
        await ex.close()
    for v in (never_sent, maybe_sent):  # both still in the stream, so both are redelivered
        await bus.publish(subjects.verdict("BTC/USDT"), v)
    start_live(services, fake)
    await wait_until(
        lambda: status_of(database_url, c2) == "FILLED", timeout=30, message="the sent one adopted"
    )
    await wait_until(
        lambda: status_of(database_url, c1) == "REJECTED", timeout=30, message="the unsent one dropped"
    )
    # the redeliveries handled (journal conflicts, acked) before we count
    await wait_until(lambda: verdicts_settled(bus), timeout=20, message="the redeliveries decided")
    assert len(fake.orders_for(c1)) == 0 and len(fake.orders_for(c2)) == 1
    assert rows(database_url, "SELECT count(*) AS n FROM fills WHERE client_order_id = %s", c2)[0]["n"] == 1


async def test_reconciliation_flags_an_order_the_journal_does_not_know(services, database_url, bus, fake):
    alerts: list[Alert] = []

    async def on_alert(a: Alert, subject: str) -> None:
        alerts.append(a)

    await bus.subscribe(subjects.ALL_ALERTS, Alert, on_alert)
    start_live(services, fake)
    ex = make_exchange(fake, api_key=fake.api_key, secret=fake.secret)
    try:
        await ex.load_markets()
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000, {"newClientOrderId": "manual-2"})
    finally:
        await ex.close()
    await wait_until(
        lambda: any(a.title == "reconciliation found mismatches" for a in alerts),
        timeout=30,
        message="a reconciliation alert",
    )
    found = rows(
        database_url, "SELECT findings FROM exec_reconciliations WHERE NOT ok ORDER BY id DESC LIMIT 1"
    )
    assert any(
        f["kind"] == "foreign_order" and f["client_order_id"] == "manual-2" for f in found[0]["findings"]
    )


async def test_kill_switch_with_flatten_sells_the_live_position_at_the_exchange(
    services, database_url, bus, fake
):
    acks: list[KillSwitchAcknowledged] = []

    async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
        acks.append(ack)

    await bus.subscribe(subjects.kill_switch_ack("execution"), KillSwitchAcknowledged, on_ack)
    start_live(services, fake)
    buy = verdict(qty="0.002")
    await bus.publish(subjects.verdict("BTC/USDT"), buy)
    await wait_until(
        lambda: status_of(database_url, client_order_id(buy.id)) == "FILLED", timeout=30, message="a live buy"
    )
    held = rows(database_url, "SELECT quantity FROM positions WHERE symbol = 'BTC/USDT'")[0]["quantity"]
    assert held == D("0.001998")  # 0.002 less Binance's 0.1 % fee, charged in BTC
    cmd = KillSwitchCommand(ts=utcnow(), action="engage", reason="flatten", actor="test", flatten=True)
    await bus.publish(subjects.kill_switch(), cmd)
    await wait_until(lambda: any(a.command_id == cmd.id for a in acks), timeout=30, message="the ack")
    ack = next(a for a in acks if a.command_id == cmd.id)
    assert ack.open_orders == 0 and "flattened: BTC/USDT filled" in ack.detail, ack.detail
    sells = rows(database_url, "SELECT * FROM orders WHERE purpose = 'flatten'")
    assert len(sells) == 1 and sells[0]["status"] == "FILLED"
    at_exchange = fake.orders_for(sells[0]["client_order_id"])
    assert len(at_exchange) == 1 and at_exchange[0].side == "SELL"
    assert rows(database_url, "SELECT quantity FROM positions WHERE symbol = 'BTC/USDT'")[0]["quantity"] < D(
        "0.00001"
    )


async def test_crash_while_the_send_is_unanswered_resolves_after_restart_without_a_second_send(
    services, database_url, bus, fake
):
    proc = start_live(services, fake, request_timeout_ms=20000)
    v = verdict()
    coid = client_order_id(v.id)
    # the exchange takes the order but holds the answer back; the process dies while waiting for it
    fake.faults.next(
        "POST /api/v3/order", "accept_timeout", where=lambda p: p.get("newClientOrderId") == coid, seconds=30
    )
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    await wait_until(lambda: len(fake.orders_for(coid)) == 1, timeout=30, message="the order at the exchange")
    sent = rows(database_url, "SELECT status, sent_at FROM orders WHERE client_order_id = %s", coid)[0]
    assert sent["status"] == "SUBMITTED" and sent["sent_at"] is not None
    proc.kill()
    again = services.start(
        "execution",
        wait=False,
        env={"BNML_LIVE__API_KEY": fake.api_key, "BNML_LIVE__API_SECRET": fake.secret},
    )
    await wait_until(
        lambda: status_of(database_url, coid) == "FILLED",
        timeout=40,
        message="the order resolved by its client id after the restart",
    )
    assert again.alive
    assert len(fake.orders_for(coid)) == 1
    posts = [
        r
        for r in list(fake.requests)
        if r.method == "POST" and r.path == "/api/v3/order" and r.params.get("newClientOrderId") == coid
    ]
    assert len(posts) == 1
    assert rows(database_url, "SELECT count(*) AS n FROM fills WHERE client_order_id = %s", coid)[0]["n"] == 1


async def test_live_never_sends_a_verdict_no_fenced_risk_writer_stamped(services, database_url, bus, fake):
    """risk_epoch 0 (no risk writer lock behind it) is refused in live mode, even on a database where the
    journal's epoch check would let it through; the stamped verdict after it (positive control) is sent."""
    with psycopg.connect(database_url) as conn:  # no risk writer ever took the lock here: the journal's
        conn.execute("DELETE FROM writer_epochs WHERE role = 'risk'")  # own check would accept epoch 0
    start_live(services, fake)
    unfenced = verdict().model_copy(update={"risk_epoch": 0})
    await bus.publish(subjects.verdict("BTC/USDT"), unfenced)
    stamp_risk_writer(database_url)  # now a risk writer takes the lock (epoch 1 again) and stamps one
    stamped = verdict()
    await bus.publish(subjects.verdict("BTC/USDT"), stamped)
    await wait_until(
        lambda: status_of(database_url, client_order_id(stamped.id)) == "FILLED",
        timeout=30,
        message="the stamped verdict filled",
    )
    assert status_of(database_url, client_order_id(unfenced.id)) is None  # never journaled
    assert fake.orders_for(client_order_id(unfenced.id)) == []  # never sent
    # refused by the gate before the journal (were it left to the journal's epoch check, it would be a
    # journaled order, or, processed after the stamp, a row of fenced_verdicts)
    assert rows(database_url, "SELECT 1 FROM fenced_verdicts WHERE verdict_id = %s", unfenced.id) == []

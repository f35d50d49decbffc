"""Scenario: two risk instances (a restart overlap, `--scale risk=2`) under a signal storm. One signal never
becomes two orders: only the holder of risk's writer lock decides, the standby publishes nothing until it
takes over, and both would answer one signal under the same verdict id. Counted where it happens: the paper
book's fills and execution's orders per signal (orders.signal_id is not unique)."""

from __future__ import annotations

import asyncio
import os
import signal
from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.contracts import Heartbeat, RiskVerdict, Signal, utcnow
from libs.common.writer_lock import lock_key
from services.risk.shell import WRITER_LOCK_NAME
from tests.helpers import ServiceProcess, verdicts_settled, wait_until, writer_of
from tests.kit.execution import EXECUTION_CONFIG, query
from tests.kit.risk import PRICES, RISK_TEST_CONFIG, Feeder

pytestmark = pytest.mark.faults

CONFIG = {
    **EXECUTION_CONFIG,
    "symbols": RISK_TEST_CONFIG["symbols"],
    # room for many approvals (paper): the storm must be able to produce duplicates if anything lets it
    "risk": {
        **RISK_TEST_CONFIG["risk"],
        "max_orders_per_10s": 49,
        "max_orders_per_10s_per_symbol": 49,
        "order_loop_trip_per_10s": 1000,
        "max_exposure_per_symbol_usdt": "100000",
        "max_total_exposure_usdt": "100000",
        "order_fraction_of_equity": "0.001",
    },
}


async def _storm(bus, n: int, gap_s: float = 0.005, side: str = "BUY") -> list[Signal]:
    """`n` signals, each published twice (a redelivered or doubled signal), `gap_s` apart."""
    sigs = []
    for i in range(n):
        sym = "BTC/USDT" if i % 2 == 0 else "ETH/USDT"
        now = utcnow()
        s = Signal(
            ts=now,
            symbol=sym,
            side=side,
            probability=0.9,
            model_version="storm",
            price=PRICES[sym],
            tick_ts=now,
        )
        await bus.publish(subjects.signal(sym), s)
        await bus.publish(subjects.signal(sym), s)
        sigs.append(s)
        await asyncio.sleep(gap_s)  # the storm's pace
    return sigs


def _per_signal(database_url: str) -> dict[str, tuple[int, int, Decimal, Decimal]]:
    """signal id -> (orders, paper fills, filled quantity, largest order quantity)."""
    rows = query(
        database_url,
        "SELECT o.signal_id, count(DISTINCT o.client_order_id), count(f.id),"
        " coalesce(sum(f.quantity), 0), max(o.quantity)"
        " FROM orders o LEFT JOIN fills f USING (client_order_id) GROUP BY o.signal_id",
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _second(services, tmp_path) -> ServiceProcess:
    """Another `python -m services.risk` with its own log file."""
    (tmp_path / "second").mkdir()
    proc = ServiceProcess("risk", services.env("risk"), tmp_path / "second").start()
    services.started.append(proc)
    return proc.wait_started()


async def _two_risks_and_execution(
    services, bus, tmp_path
) -> tuple[ServiceProcess, ServiceProcess, list[RiskVerdict]]:
    """Risk (the first to start takes the writer lock), a second risk, execution; and every verdict seen."""
    first = services.start("risk")
    second = _second(services, tmp_path)
    services.start("execution")
    verdicts: list[RiskVerdict] = []

    async def on_verdict(v: RiskVerdict, subject: str) -> None:
        verdicts.append(v)

    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
    return first, second, verdicts


async def test_two_risk_instances_under_a_signal_storm_give_one_order_per_signal(
    services, bus, database_url, tmp_path
):
    services.configure(CONFIG)
    first, second, verdicts = await _two_risks_and_execution(services, bus, tmp_path)
    a, b = first.instance, second.instance  # from their first heartbeats
    async with Feeder(bus):
        await wait_until(
            lambda: writer_of(database_url, "risk") is not None, timeout=15, message="a risk writer"
        )
        # one taking of the lock so far (epoch 1), by the first instance: the second never took it
        assert writer_of(database_url, "risk") == (1, a), "two risk instances took the writer lock"
        # fresh data reaches the writer: wait for its first approval
        await wait_until(
            lambda: asyncio.ensure_future(_storm(bus, 1)) and any(v.approved for v in verdicts),
            timeout=20,
            interval=0.5,
            message="the writer approving",
        )
        # ~5 s of signals (under risk's 49 approvals / 10 s): longer than any start-up hold of a second instance
        before = await _storm(bus, 40, gap_s=0.12)
        await wait_until(
            lambda: all(any(v.signal_id == s.id for v in verdicts) for s in before),
            timeout=20,
            message="a verdict for every signal of the storm",
        )
        issuers = {v.issued_by for v in verdicts}
        assert issuers == {a}, f"verdicts from {issuers}; only the writer {a} may decide (standby {b})"
        # the writer dies; the standby takes over (the lock's session ends with the process)
        first.kill()
        await wait_until(
            lambda: writer_of(database_url, "risk") == (2, b), timeout=15, message="the takeover"
        )
        during: list[Signal] = []  # unanswered while nobody holds the lock (fail closed), then answered by b

        async def approved_by_b() -> bool:
            during.extend(await _storm(bus, 10))
            return any(v.approved and v.issued_by == b for v in verdicts)

        await wait_until(approved_by_b, timeout=30, interval=0.3, message="the new writer approving")
        after = await _storm(bus, 40)
        signals = before + during + after
        await wait_until(
            lambda: all(any(v.signal_id == s.id for v in verdicts) for s in after),
            timeout=20,
            message="a verdict for every signal after the takeover",
        )
        approved = {v.signal_id for v in verdicts if v.approved}
        await wait_until(
            lambda: approved <= set(_per_signal(database_url)),
            timeout=30,
            message="every approved signal journaled",
        )
        # every verdict out so far decided by execution (a second order of a signal would be journaled now)
        await wait_until(lambda: verdicts_settled(bus), timeout=20, message="every verdict decided")
    per_signal = _per_signal(database_url)
    doubled = {s: r for s, r in per_signal.items() if r[0] > 1 or r[2] > r[3]}
    assert not doubled, f"signals that became more than one order (orders, fills, filled, qty): {doubled}"
    assert len(per_signal) >= 20 and any(s.id in per_signal for s in after), "positive control: orders happen"
    assert {v.issued_by for v in verdicts if v.approved and v.signal_id in {s.id for s in after}} == {b}
    assert set(per_signal) <= {s.id for s in signals} | {v.signal_id for v in verdicts}


async def test_a_paused_writer_whose_lock_was_taken_over_gets_no_approval_acted_on(
    services, bus, database_url, tmp_path
):
    services.configure({**CONFIG, "risk": {**CONFIG["risk"], "verdict_ttl_s": 5, "max_signal_age_s": 5}})
    first, second, verdicts = await _two_risks_and_execution(services, bus, tmp_path)
    a, b = first.instance, second.instance  # from their first heartbeats
    fenced_beats: dict[str, bool] = {}

    async def on_beat(hb: Heartbeat, subject: str) -> None:
        fenced_beats[hb.instance] = hb.detail.startswith("fenced")

    await bus.subscribe(subjects.heartbeat("risk"), Heartbeat, on_beat)
    async with Feeder(bus):
        await wait_until(
            lambda: asyncio.ensure_future(_storm(bus, 1)) and any(v.approved for v in verdicts),
            timeout=20,
            interval=0.5,
            message="the writer approving (positive control)",
        )
        assert {v.issued_by for v in verdicts} == {a}
        assert fenced_beats.get(a) is False  # its heartbeats arrive, and say it is not fenced (yet)
        # the writer hangs, and meanwhile its lock session is cut (a network cut, an admin, a Postgres restart)
        os.kill(first.proc.pid, signal.SIGSTOP)
        try:
            pids = query(
                database_url,
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objid = (%s::bigint & 4294967295)::oid",
                (lock_key(WRITER_LOCK_NAME),),
            )
            assert len(pids) == 1
            query(database_url, "SELECT pg_terminate_backend(%s)", (pids[0][0],))
            await wait_until(
                lambda: writer_of(database_url, "risk") == (2, b), timeout=15, message="the takeover"
            )
            paused = await _storm(bus, 10)  # fresh signals queued at the paused old writer
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
        await wait_until(
            lambda: (
                all(any(v.signal_id == s.id and v.issued_by == a for v in verdicts) for s in paused)
                or not first.alive
            ),
            timeout=15,
            message="the old writer answering what it had queued",
        )
        from_old = [v for v in verdicts if v.issued_by == a and v.signal_id in {s.id for s in paused}]
        assert from_old, "the old writer answered nothing after resuming: the fence was not exercised"
        # it may publish an approval or two before its own checks fence it (database_unavailable, not_writer):
        # they carry its deposed epoch, and execution journals no order for them (fenced_verdicts says why)
        assert {v.risk_epoch for v in from_old if v.approved} <= {min(v.risk_epoch for v in verdicts)}
        # "later" means after the old writer has found out: its heartbeat says fenced (or it stopped). Before
        # that it may still approve (within WRITER_CHECK_S of resuming), and only the epoch fence stops those.
        await wait_until(
            lambda: not first.alive or fenced_beats.get(a, False), timeout=15, message="the old writer fenced"
        )
        later: list[Signal] = []

        async def approved_by_b() -> bool:
            later.extend(await _storm(bus, 2))
            return any(v.approved and v.issued_by == b for v in verdicts)

        await wait_until(
            approved_by_b, timeout=30, interval=0.5, message="the new writer approving (positive control)"
        )
    assert not [
        v for v in verdicts if v.issued_by == a and v.approved and v.signal_id in {s.id for s in later}
    ]
    per_signal = _per_signal(database_url)
    assert not {s: r for s, r in per_signal.items() if r[0] > 1}
    old_approved = {v.signal_id for v in from_old if v.approved}
    assert not old_approved & set(per_signal), "an approval of the deposed writer became an order"
    assert {v.id for v in from_old if v.approved} <= {
        r[0] for r in query(database_url, "SELECT verdict_id FROM fenced_verdicts")
    }

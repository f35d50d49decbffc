"""What the fault scenarios share: verdicts and ticks as risk and market_data would send them, journal queries."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal

import psycopg

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, RiskVerdict, Tick, utcnow
from tests.helpers import publish_tick

SYMBOL = "BTC/USDT"
PRICE = Decimal("60000")
QTY = Decimal("0.0002")  # 12 USDT: above Binance's 5 USDT minimum notional, on the 0.00001 step

# Execution on paper with room for thousands of small orders; the test plays risk and market_data.
EXECUTION_CONFIG = {"execution": {"starting_balances": {"USDT": "100000000", "BTC": "1000"}}}


def make_verdict(side: str = "BUY", *, ttl_s: float = 60.0, qty: Decimal = QTY, symbol: str = SYMBOL,
                 approved: bool = True) -> RiskVerdict:
    now = utcnow()
    limit = PRICE * (Decimal("1.01") if side == "BUY" else Decimal("0.99"))
    return RiskVerdict(ts=now, signal_id=f"sig-{now.timestamp():.6f}-{id(object())}", symbol=symbol, side=side,
                       approved=approved, quantity=qty if approved else Decimal(0),
                       price_limit=limit if approved else Decimal(0),
                       reasons=[] if approved else ["test_refusal"], expires_at=now + timedelta(seconds=ttl_s),
                       tick_ts=now)


def make_tick(symbol: str = SYMBOL, price: Decimal = PRICE) -> Tick:
    return Tick(ts=utcnow(), symbol=symbol, bid=price - Decimal("0.5"), ask=price + Decimal("0.5"), last=price,
                volume=Decimal("5"), source="synthetic")


async def publish_with_retry(bus: Bus, subject: str, msg, attempts: int = 100) -> None:
    """Publish through an outage: retry with the same message id (JetStream drops the duplicate)."""
    for _ in range(attempts):
        try:
            await bus.publish(subject, msg, timeout=1.0)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"could not publish {msg.id} on {subject}")


@contextlib.asynccontextmanager
async def ticking(bus: Bus, symbol: str = SYMBOL, every_s: float = 0.1):
    """Keep a fresh price on the bus (market_data's job) while the block runs."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                if bus.connected:
                    await publish_tick(bus, make_tick(symbol))
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()


class Acks:
    """Collects kill-switch acknowledgements by command id."""

    def __init__(self, subject: str = subjects.ALL_KILL_SWITCH_ACKS) -> None:
        self.subject = subject
        self.by_command: dict[str, dict[str, KillSwitchAcknowledged]] = {}
        self._arrived = asyncio.Event()

    async def attach(self, bus: Bus) -> Acks:
        await bus.subscribe(self.subject, KillSwitchAcknowledged, self._on)
        return self

    async def _on(self, ack: KillSwitchAcknowledged, subject: str) -> None:
        self.by_command.setdefault(ack.command_id, {})[ack.service] = ack
        self._arrived.set()

    async def wait(self, command_id: str, services: tuple[str, ...], timeout: float = 10.0) -> dict:
        """Woken by each arrival (no polling: a race test's own loop stays out of the way)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = self.by_command.get(command_id, {})
            if all(s in got for s in services):
                return got
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no ack for {command_id} from {services}: {self.by_command.get(command_id)}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)


async def kill_switch(bus: Bus, action: str, reason: str = "fault test") -> KillSwitchCommand:
    cmd = KillSwitchCommand(ts=utcnow(), action=action, reason=reason, actor="fault-test")
    await publish_with_retry(bus, subjects.kill_switch(), cmd)
    return cmd


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(database_url: str, sql: str, params: tuple = ()):
    return query(database_url, sql, params)[0][0]


def orders_by_verdict(database_url: str) -> dict[str, int]:
    return dict(query(database_url, "SELECT verdict_id, count(*) FROM orders GROUP BY verdict_id"))


def assert_one_order_per_verdict(database_url: str, verdict_ids: list[str]) -> None:
    counts = orders_by_verdict(database_url)
    missing = [v for v in verdict_ids if v not in counts]
    dupes = {v: n for v, n in counts.items() if n > 1}
    assert not dupes, f"verdicts with more than one order: {dupes}"
    assert not missing, f"{len(missing)} verdicts lost (no order journaled), e.g. {missing[:3]}"
    fills_per_order = query(database_url, "SELECT o.client_order_id, count(f.id), sum(f.quantity), o.quantity"
                                          " FROM orders o LEFT JOIN fills f USING (client_order_id)"
                                          " WHERE o.status = 'FILLED' GROUP BY o.client_order_id, o.quantity")
    overfilled = [r for r in fills_per_order if r[2] is not None and r[2] > r[3]]
    assert not overfilled, f"orders filled beyond their quantity: {overfilled[:3]}"

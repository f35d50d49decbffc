"""Builders for the risk tests (integration and faults): a feeder of fresh market data and heartbeats, as
market_data and execution would send them; a collector of what risk publishes; fills; kv_state reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

import psycopg

from libs.common import subjects
from libs.common.contracts import (
    Alert,
    BreakerTripped,
    Fill,
    Heartbeat,
    RiskVerdict,
    Signal,
    Tick,
    TradingStateChanged,
    utcnow,
)
from tests.helpers import publish_tick, wait_until

PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000")}
# Only the symbols this test feeds, and quick heartbeats.
RISK_TEST_CONFIG = {"symbols": list(PRICES), "risk": {"heartbeat_timeout_s": 5, "stale_after_s": 5}}


class Feeder:
    """Publishes ticks for PRICES and heartbeats for market_data and execution, as those services would."""

    def __init__(self, bus, spread: Decimal = Decimal("0")):
        self.bus = bus
        self.spread = spread  # ask = last + spread, bid = last - spread (a limit at `last` then rests)
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            now = utcnow()
            for svc in ("market_data", "execution"):
                await self.bus.publish(
                    subjects.heartbeat(svc), Heartbeat(ts=now, service=svc, instance="t", uptime_s=1)
                )
            for sym, px in PRICES.items():
                await publish_tick(
                    self.bus,
                    Tick(
                        ts=now,
                        symbol=sym,
                        bid=px - self.spread,
                        ask=px + self.spread,
                        last=px,
                        volume=Decimal("1"),
                    ),
                )
            await asyncio.sleep(0.2)  # the feed's pace (fresh within risk's stale_after_s)

    async def __aenter__(self) -> Feeder:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Collector:
    def __init__(self) -> None:
        self.verdicts: dict[str, RiskVerdict] = {}
        self.trips: list[BreakerTripped] = []
        self.states: list[TradingStateChanged] = []
        self.alerts: list[Alert] = []

    async def attach(self, bus) -> Collector:
        async def on_verdict(v: RiskVerdict, s: str) -> None:
            self.verdicts[v.signal_id] = v

        async def on_trip(v: BreakerTripped, s: str) -> None:
            self.trips.append(v)

        async def on_state(v: TradingStateChanged, s: str) -> None:
            self.states.append(v)

        async def on_alert(v: Alert, s: str) -> None:
            self.alerts.append(v)

        await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
        await bus.subscribe(subjects.breaker_tripped(), BreakerTripped, on_trip)
        await bus.subscribe(subjects.trading_state(), TradingStateChanged, on_state)
        await bus.subscribe(subjects.ALL_ALERTS, Alert, on_alert)
        return self

    async def ask(self, bus, symbol: str = "BTC/USDT", side: str = "BUY", timeout: float = 15) -> RiskVerdict:
        sig = Signal(
            ts=utcnow(), symbol=symbol, side=side, probability=0.7, model_version="test", price=PRICES[symbol]
        )
        await bus.publish(subjects.signal(symbol), sig)
        await wait_until(
            lambda: sig.id in self.verdicts, timeout=timeout, message=f"a verdict for {side} {symbol}"
        )
        return self.verdicts[sig.id]

    async def ask_until(
        self, bus, predicate, symbol: str = "BTC/USDT", side: str = "BUY", timeout: float = 20
    ) -> RiskVerdict:
        """Ask again (fresh signal ids) until a verdict satisfies `predicate` (risk needs fresh data first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            v = await self.ask(bus, symbol, side)
            if predicate(v):
                return v
            if loop.time() > deadline:
                raise AssertionError(f"no matching verdict; last: approved={v.approved} reasons={v.reasons}")
            await asyncio.sleep(0.3)  # between asks (each waits for its own verdict)


def fill(symbol: str, side: str, qty: str, price: str, n: int) -> Fill:
    q, p = Decimal(qty), Decimal(price)
    return Fill(
        ts=utcnow(),
        client_order_id=f"test-{n}",
        trade_id=f"test-trade-{n}",
        symbol=symbol,
        side=side,
        quantity=q,
        price=p,
        fee=q * p * Decimal("0.001"),
        fee_asset="USDT",
    )


def kv(database_url: str, key: str) -> dict | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT value FROM kv_state WHERE key = %s", (key,)).fetchone()
    if row is None:
        return None
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def count(database_url: str, sql: str, *args) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, args).fetchone()[0]

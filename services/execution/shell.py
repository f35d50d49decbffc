"""execution shell: durable verdict consumer, journal-before-send, paper book, kill-switch latch."""

from __future__ import annotations

from decimal import Decimal

from libs.common import subjects
from libs.common.contracts import (
    Fill,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    OrderEvent,
    RiskVerdict,
    Tick,
    utcnow,
)
from libs.common.kill_switch import KillSwitchLatch, refresh_latch
from libs.common.service import Runtime
from services.execution.core import PaperFill, client_order_id, may_send, paper_market_fill

OPEN_STATUSES = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "UNKNOWN")


class ExecutionService:
    name = "execution"
    needs_db = True

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self.last_tick: dict[str, Tick] = {}

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        m = rt.metrics
        self.refused = m.counter("verdicts_refused_total", "Verdicts not sent", ["reason"])
        self.orders = m.counter("orders_total", "Orders by final status", ["status"])
        self.latency = m.histogram("tick_to_order_seconds", "Tick event time to journaled paper fill")
        # Read the standing kill-switch state before taking any verdict.
        await refresh_latch(rt.bus, self.latch, rt.log)
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))
        rt.bus.on_reconnect.append(lambda: refresh_latch(rt.bus, self.latch, rt.log))
        await rt.bus.subscribe(subjects.kill_switch(), KillSwitchCommand, self.on_kill_switch, fail_closed=True)
        await rt.bus.subscribe(subjects.ALL_TICKS, Tick, self.on_tick)
        await rt.bus.consume("VERDICTS", "execution", subjects.ALL_VERDICTS, RiskVerdict, self.on_verdict)

    async def on_tick(self, tick: Tick, subject: str) -> None:
        self.last_tick[tick.symbol] = tick

    async def on_kill_switch(self, cmd: KillSwitchCommand, subject: str) -> None:
        self.latch.apply(cmd)
        self.rt.log.warning("kill switch latched", action=cmd.action, reason=cmd.reason)
        open_orders = await self._count_open()
        ack = KillSwitchAcknowledged(ts=utcnow(), command_id=cmd.id, service=self.name,
                                     engaged=cmd.action == "engage", open_orders=open_orders,
                                     detail="zero open orders confirmed" if open_orders == 0 else "")
        await self.rt.bus.publish(subjects.kill_switch_ack(self.name), ack)

    async def _count_open(self) -> int:
        async with self.rt.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT count(*) AS n FROM orders WHERE status = ANY(%s)", (list(OPEN_STATUSES),))).fetchone()
        return int(row["n"])

    async def on_verdict(self, verdict: RiskVerdict, subject: str) -> None:
        if not verdict.approved:
            return
        gate = may_send(verdict, kill_switch_blocks=self.latch.blocks, now=utcnow())
        if not gate.allowed:
            self.refused.labels(reason=gate.reason).inc()
            self.rt.log.info("verdict not sent", verdict_id=verdict.id, reason=gate.reason)
            return
        coid = client_order_id(verdict.id)
        if not await self._journal(verdict, coid):
            self.rt.log.info("duplicate verdict ignored", verdict_id=verdict.id, client_order_id=coid)
            return
        await self._publish_order(verdict, coid, "SUBMITTED")
        # Immediately before the send: the kill switch wins every race.
        gate = may_send(verdict, kill_switch_blocks=self.latch.blocks, now=utcnow())
        if not gate.allowed:
            await self._finish(verdict, coid, "REJECTED", gate.reason)
            return
        result = paper_market_fill(verdict, self.last_tick.get(verdict.symbol), self.rt.settings.execution.taker_fee_rate)
        if isinstance(result, str):
            await self._finish(verdict, coid, "REJECTED", result)
            return
        await self._fill(verdict, coid, result)

    async def _journal(self, v: RiskVerdict, coid: str) -> bool:
        """Commit the order row before anything is sent; False if this verdict was journaled already."""
        async with self.rt.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, signal_id, symbol, side, quantity, price_limit,"
                " status, mode, tick_ts) VALUES (%s, %s, %s, %s, %s, %s, %s, 'SUBMITTED', %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING client_order_id",
                (coid, v.id, v.signal_id, v.symbol, v.side, v.quantity, v.price_limit, self.rt.settings.mode, v.tick_ts),
            )
            return await cur.fetchone() is not None

    async def _finish(self, v: RiskVerdict, coid: str, status: str, reason: str) -> None:
        async with self.rt.pool.connection() as conn:
            await conn.execute("UPDATE orders SET status = %s, reason = %s, updated_at = now() WHERE client_order_id = %s",
                               (status, reason, coid))
        self.orders.labels(status=status).inc()
        await self._publish_order(v, coid, status, reason=reason)

    async def _fill(self, v: RiskVerdict, coid: str, f: PaperFill) -> None:
        now = utcnow()
        base, quote = v.symbol.split("/")
        signed = f.quantity if v.side == "BUY" else -f.quantity
        async with self.rt.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE orders SET status = 'FILLED', filled_quantity = %s, average_price = %s, fee_usdt = %s,"
                " updated_at = now() WHERE client_order_id = %s", (f.quantity, f.price, f.fee_usdt, coid))
            await conn.execute(
                "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset, ts)"
                " VALUES ('paper', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (coid + "-1", coid, v.symbol, v.side, f.quantity, f.price, f.fee_usdt, quote, now))
            await conn.execute(
                "INSERT INTO positions (symbol, quantity, average_cost) VALUES (%s, %s, %s)"
                " ON CONFLICT (symbol) DO UPDATE SET quantity = positions.quantity + EXCLUDED.quantity, updated_at = now()",
                (v.symbol, signed, f.price))
        self.orders.labels(status="FILLED").inc()
        self.rt.metrics.count("orders")
        self.rt.metrics.count("fills")
        if v.tick_ts is not None:
            self.latency.observe((utcnow() - v.tick_ts).total_seconds())
        await self._publish_order(v, coid, "FILLED", filled=f.quantity, avg=f.price)
        await self.rt.bus.publish(subjects.fill(v.symbol), Fill(
            ts=now, client_order_id=coid, exchange="paper", trade_id=coid + "-1", symbol=v.symbol, side=v.side,
            quantity=f.quantity, price=f.price, fee=f.fee_usdt, fee_asset=quote))

    async def _publish_order(self, v: RiskVerdict, coid: str, status: str, *, reason: str = "",
                             filled: Decimal = Decimal("0"), avg: Decimal | None = None) -> None:
        await self.rt.bus.publish(subjects.order(v.symbol), OrderEvent(
            ts=utcnow(), client_order_id=coid, verdict_id=v.id, symbol=v.symbol, side=v.side, status=status,
            quantity=v.quantity, price=v.price_limit, filled_quantity=filled, average_price=avg,
            mode=self.rt.settings.mode, reason=reason))

    async def stop(self) -> None:
        return None

    def health(self) -> tuple[str, str]:
        return ("halted", self.latch.reason or "") if self.latch.blocks else ("ok", "")

"""execution's publisher (shell): order events and fills out to the bus once the journal has them, and the
fill outbox (a fill whose publish failed stays unpublished in the journal and is sent again)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.clock import Clock
from libs.common.contracts import Fill, OrderEvent, RiskVerdict
from services.execution.core import fill_message_id
from services.execution.journal import FillRow, Journal, NewOrder, OrderRow

OUTBOX_PERIOD_S = 1.0  # the fill outbox: record acks and resend unacknowledged fills this often
OUTBOX_GRACE_S = 2.0  # a fill younger than this is still being published by the path that journaled it


def order_event(o: NewOrder | OrderRow, ts: datetime, status: str, mode: str, reason: str) -> OrderEvent:
    """The one builder of an order's event: a new order (not journaled yet) has nothing filled, so only a
    journal row carries its fills, average price and exchange id."""
    journaled = (
        dict(
            filled_quantity=o.filled_quantity,
            average_price=o.average_price,
            exchange_order_id=o.exchange_order_id,
        )
        if isinstance(o, OrderRow)
        else {}
    )
    return OrderEvent.model_validate(
        dict(
            ts=ts,
            client_order_id=o.client_order_id,
            verdict_id=o.verdict_id,
            symbol=o.symbol,
            side=o.side,
            order_type=o.order_type,
            status=status,
            quantity=o.quantity,
            price=o.price_limit,
            mode=mode,
            reason=reason,
            **journaled,
        )
    )


@dataclass
class Meters:
    """The execution metrics the publisher moves (declared by the shell)."""

    count: Callable[[str], None]  # the shared throughput counters (rt.metrics.count)
    orders: Any  # orders_total{status}
    fills: Any  # fills_total{liquidity}
    tick_to_order: Any  # tick_to_order_seconds
    verdict_to_fill: Any  # verdict_to_fill_seconds


class Publisher:
    def __init__(self, bus: Bus, clock: Clock, log: Any, journal: Journal, mode: str, meters: Meters) -> None:
        self.bus, self.clock, self.log, self.journal, self.mode, self.m = (
            bus,
            clock,
            log,
            journal,
            mode,
            meters,
        )
        self.pending: dict[str, Awaitable[None]] = {}  # client order id -> its SUBMITTED event
        self._acked: set[tuple[str, str, str]] = set()  # JetStream acked; published_at not yet written

    async def order(self, o: NewOrder, status: str, reason: str = "", ts: datetime | None = None) -> None:
        await self.bus.publish(
            subjects.order(o.symbol), order_event(o, ts or self.clock.now(), status, self.mode, reason)
        )

    async def row(self, row: OrderRow | None, ts: datetime | None = None) -> None:
        if row is None:
            return
        event = order_event(row, ts or self.clock.now(), row.status, row.mode, row.reason[:500])
        await self.bus.publish(subjects.order(row.symbol), event)

    async def fill(self, f: FillRow) -> bool:
        """Publish one journaled fill (until JetStream acknowledges it, it stays unpublished in the journal and
        the outbox sends it again). Never raises: the fill is durable, the outbox has it."""
        key = (f.exchange, f.symbol, f.trade_id)
        try:
            await self.bus.publish(
                subjects.fill(f.symbol),
                Fill.model_validate(
                    dict(
                        id=fill_message_id(*key),
                        ts=f.ts,
                        client_order_id=f.client_order_id,
                        exchange=f.exchange,
                        trade_id=f.trade_id,
                        symbol=f.symbol,
                        side=f.side,
                        quantity=f.quantity,
                        price=f.price,
                        fee=f.fee,
                        fee_asset=f.fee_asset,
                        is_maker=f.is_maker,
                        realized_pnl_usdt=f.realized_pnl_usdt,
                    )
                ),
            )
        except Exception as exc:
            self.log.warning(
                "fill publish failed; the outbox sends it again",
                trade_id=f.trade_id,
                symbol=f.symbol,
                error=str(exc)[:200],
            )
            return False
        self._acked.add(key)
        return True

    async def after_update(
        self,
        coid: str,
        status: str,
        reason: str,
        fills: list[FillRow],
        verdict: RiskVerdict | None = None,
        row: OrderRow | None = None,
    ) -> None:
        """Count, measure and publish a journaled change (the journal is already committed)."""
        journaled_at = self.clock.now()  # the event's time: when the change became durable, not its publish
        self.m.orders.labels(status=status).inc()
        for f in fills:
            self.m.count("fills")
            self.m.fills.labels(liquidity="maker" if f.is_maker else "taker").inc()
        if row is None or row.client_order_id != coid:
            row = await self.journal.get_order(coid)
        pending = self.pending.pop(coid, None)
        if pending is not None:
            await pending
        if fills and verdict is not None:
            self.m.verdict_to_fill.observe((journaled_at - verdict.ts).total_seconds())
            if verdict.tick_ts is not None:
                self.m.tick_to_order.observe((journaled_at - verdict.tick_ts).total_seconds())
        done = await asyncio.gather(
            self.row(row, journaled_at), *(self.fill(f) for f in fills), return_exceptions=True
        )
        if isinstance(done[0], BaseException):
            raise done[0]

    async def finish(self, order: NewOrder, status: str, reason: str) -> None:
        await self.journal.set_status(order.client_order_id, status, reason=reason)
        await self.after_update(order.client_order_id, status, reason, [])

    # -- the fill outbox --------------------------------------------------------------------------
    async def outbox_loop(self, is_writer: Callable[[], bool]) -> None:
        """As the writer: record JetStream's acks of fills, and publish again every journaled fill it has not
        acknowledged (a publish that failed after the commit, or a process killed in between)."""
        while True:
            await asyncio.sleep(OUTBOX_PERIOD_S)
            if not is_writer():
                continue
            try:
                await self.outbox_once()
            except Exception as exc:  # the database or the bus is away: the fills stay in the outbox
                self.log.warning("fill outbox pass failed", error=str(exc)[:200])

    async def outbox_once(self, older_than_s: float = OUTBOX_GRACE_S) -> int:
        await self._record_acked()
        rows = await self.journal.unpublished_fills(older_than_s)
        sent = [r for r in rows if await self.fill(r)]
        if rows:
            self.log.warning(
                "fill outbox: journaled fills published again",
                published=len(sent),
                failed=len(rows) - len(sent),
            )
        await self._record_acked()
        return len(sent)

    async def _record_acked(self) -> None:
        """Write `published_at` for the fills JetStream acknowledged; kept for the next pass if that fails."""
        acked, self._acked = self._acked, set()
        try:
            await self.journal.mark_published(sorted(acked))
        except Exception:
            self._acked |= acked
            raise

"""The paper broker (shell): the paper exchange (`paper.py`, pure) behind the broker port. It journals every
result of the paper book in one transaction (with the paper exchange's record of the request) and publishes
it; resting orders meet each symbol's newest tick every PAPER_PERIOD_S."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

from libs.common.conflate import Conflated
from libs.common.contracts import RiskVerdict, Tick
from libs.common.markets import Markets
from services.execution.broker import BrokerPorts, GateCheck
from services.execution.journal import NewOrder, PaperRequest
from services.execution.ledger import ZERO, split_symbol
from services.execution.paper import (
    FeeSchedule,
    PaperExchange,
    PaperResult,
    SlippageModel,
    exchange_rounder,
    fill_row,
    new_paper_order,
    usable_tick,
)
from services.execution.rules import MarkNotSent, paper_recovery

PAPER_PERIOD_S = 0.02


class PaperBroker:
    knows_every_outcome = True

    def __init__(self, ports: BrokerPorts, ticks: Conflated[Tick], stale_after_s: float) -> None:
        self.p = ports
        self.markets: Markets | None = ports.markets
        self.ticks = ticks
        self.stale_after_s = stale_after_s
        cfg = ports.cfg
        self.book = PaperExchange(
            ports.ledger,
            FeeSchedule(cfg.taker_fee_rate, cfg.maker_fee_rate, cfg.bnb_fee_discount),
            SlippageModel(cfg.slippage_bps, cfg.slippage_bps_per_10k_usdt),
            cfg.limit_participation,
            self._round_fill_price,
        )

    def _round_fill_price(self, symbol: str, price: Decimal, side: str) -> Decimal:
        """Paper fill prices land on the exchange's tick, rounded against us (a BUY up, a SELL down)."""
        return exchange_rounder(self.markets)(symbol, price, side)

    async def start(self) -> None:
        """Rebuild the paper book from the journal; an order interrupted before its match never happened."""
        p = self.p
        for step in paper_recovery(await p.journal.open_orders()):
            if isinstance(step, MarkNotSent):
                coid = step.client_order_id
                await p.journal.set_status(coid, "REJECTED", reason=step.reason)
                p.log.warning("paper order interrupted by a restart; marked not sent", client_order_id=coid)
                await p.publisher.row(await p.journal.get_order(coid))
            else:
                self.book.restore(step.order)
                p.log.info("resting paper order restored", client_order_id=step.order.client_order_id)
        p.spawn(self._loop(), "paper-book")

    async def close(self) -> None:
        return None

    async def _loop(self) -> None:
        """Resting paper orders: expire them on time, and match them against each symbol's newest tick."""
        while True:
            await asyncio.sleep(PAPER_PERIOD_S)
            if not self.p.is_writer() or not self.book.book:
                self.ticks.skip()  # nothing rests: no tick to match
                continue
            ticks = self.ticks.drain()
            for tick in ticks:
                self.p.clock.observe(tick.ts)
            async with self.p.lock:
                now = self.p.clock.now()
                for res in self.book.expire(now):
                    await self._journal(res)
                resting = {o.symbol for o in self.book.book.values()}
                for tick in ticks:
                    if tick.symbol in resting:
                        for res in self.book.on_tick(tick, now):
                            await self._journal(res)

    async def place(self, order: NewOrder, gate: GateCheck | None, verdict: RiskVerdict | None = None) -> str:
        return (await self.send(order, gate, verdict)).status

    async def send(
        self, order: NewOrder, gate: GateCheck | None, verdict: RiskVerdict | None = None
    ) -> PaperResult:
        """Send one journaled order to the paper book. With a gate, the caller has just checked it (no await
        since), so the request is in flight (the fence) until the book has it."""
        p = self.p
        with p.fence.sending() if gate is not None else contextlib.nullcontext():
            if p.cfg.paper_latency_ms:
                await asyncio.sleep(p.cfg.paper_latency_ms / 1000)
            now = p.clock.now()  # the instant the paper exchange receives the request
            tick = usable_tick(p.tick_for(order.symbol), now, self.stale_after_s)
            po = new_paper_order(
                order.client_order_id,
                order.symbol,
                order.side,
                order.order_type,
                order.quantity,
                order.price_limit,
                now,
                p.cfg.limit_order_ttl_s,
            )
            res = self.book.submit(po, tick, now)
        request = PaperRequest(
            order.client_order_id, order.symbol, order.side, order.quantity, now, p.instance
        )
        await self._journal(res, verdict, request=request)
        return res

    async def _journal(
        self, res: PaperResult, verdict: RiskVerdict | None = None, request: PaperRequest | None = None
    ) -> None:
        p, o = self.p, res.order
        base, quote = split_symbol(o.symbol)
        now = p.clock.now()
        rows = [fill_row(t, now) for t in res.trades]
        await p.journal.commit_order_update(
            o.client_order_id,
            status=res.status,
            reason=res.reason or None,
            filled=o.filled,
            average_price=o.average_price,
            fee_usdt_add=sum((r.fee_usdt for r in rows), ZERO),
            locked=o.locked,
            trades=o.trades,
            fills=rows,
            ledger=p.ledger,
            symbol=o.symbol,
            assets={base, quote},
            resting_expires_at=o.expires_at if res.status == "ACCEPTED" else None,
            request=request,
        )
        await p.publisher.after_update(
            o.client_order_id, res.status, res.reason, rows, verdict, row=p.journal.last_row
        )

    async def sweep(self) -> int:
        """Cancel the paper book and every journal order left open; the journal then confirms zero open.

        One query when nothing was open (the usual case: the engage is acknowledged fastest then); a
        second count confirms the result whenever something had to be cancelled."""
        p = self.p
        changed = False
        for res in self.book.cancel_all("kill_switch"):
            await self._journal(res)
            changed = True
        rows = await p.journal.open_orders()
        for row in rows:
            # The paper book is the exchange: an order not in it is not open anywhere.
            if row.client_order_id not in self.book.book:
                await p.journal.set_status(row.client_order_id, "CANCELLED", reason="kill_switch")
                await p.publisher.row(await p.journal.get_order(row.client_order_id))
                changed = True
        if not changed:
            return len(self.book.book) + len(rows)
        return len(self.book.book) + await p.journal.count_open()

"""The live broker's journal side (shell): one of our orders brought to the exchange's view (status, new
fills booked into the ledger, one commit), or refused. Shared by the sending broker (`live.py`) and the
reconciliation (`live_reconcile.py`); which trades are new and when a fill happened is `live_core.py`'s."""

from __future__ import annotations

from services.execution.adapter import ExchangeOrder, ExchangeTrade, NotFound
from services.execution.broker import BrokerPorts
from services.execution.core import status_from_exchange, transition
from services.execution.journal import FillRow, OrderRow
from services.execution.ledger import ZERO, split_symbol
from services.execution.live_client import BinanceClient
from services.execution.live_core import EXCHANGE, fill_time, needs_trade_lookup, unbooked


class JournalSync:
    def __init__(self, ports: BrokerPorts, client: BinanceClient) -> None:
        self.p, self.client, self.journal = ports, client, ports.journal

    async def refresh(self, row: OrderRow) -> str:
        try:
            o = await self.client.order_by_client_id(row.symbol, row.client_order_id, retrying=True)
        except NotFound:
            return row.status
        return await self.apply(row.client_order_id, o)

    async def apply(self, coid: str, o: ExchangeOrder) -> str:
        """Bring the journal to the exchange's view of one of our orders: status, fills, books."""
        row = await self.journal.get_order(coid)
        if row is None:
            return "UNKNOWN"
        amount = o.amount or row.quantity
        status = status_from_exchange(o.status, o.filled, amount)
        fills = await self._new_fills(row, o)
        t = transition(row.status, status, adopting=row.status in ("REJECTED", "UNKNOWN"))
        if not t.allowed and not fills:
            return row.status
        final = status if t.allowed else row.status
        base, quote = split_symbol(row.symbol)
        inserted = await self.journal.commit_order_update(
            coid,
            status=final,
            reason=None,
            filled=max(o.filled, row.filled_quantity),
            average_price=o.average,
            fee_usdt_add=sum((f.fee_usdt for f in fills), ZERO),
            locked=ZERO,
            trades=None,
            fills=fills,
            ledger=self.p.ledger,
            symbol=row.symbol,
            assets={base, quote} | {f.fee_asset for f in fills},
            exchange_order_id=o.id,
        )
        await self.p.publisher.after_update(coid, final, "", inserted)
        return final

    async def reject(self, coid: str, reason: str) -> str:
        await self.journal.set_status(coid, "REJECTED", reason=reason)
        await self.p.publisher.after_update(coid, "REJECTED", reason, [])
        return "REJECTED"

    async def _new_fills(self, row: OrderRow, o: ExchangeOrder) -> list[FillRow]:
        """Trades of this order the journal does not have yet, booked into the ledger (caller commits)."""
        known = await self.journal.known_trade_ids(EXCHANGE, [row.client_order_id])
        trades = list(o.trades)
        if needs_trade_lookup(o) and o.id is not None:
            trades = [
                t
                for t in await self.client.trades(row.symbol, None, None, {"orderId": o.id})
                if t.order == o.id
            ]
        return [self._book(row, t) for t in unbooked(trades, known)]

    def _book(self, row: OrderRow, t: ExchangeTrade) -> FillRow:
        symbol, side = row.symbol, row.side
        base, quote = split_symbol(symbol)
        fee_asset = t.fee_currency or quote
        fee_quote_value = None
        if fee_asset not in (base, quote):
            ref = self.p.tick_for(f"{fee_asset}/{quote}")
            fee_quote_value = t.fee_cost * ref.last if ref is not None else ZERO
        acc = self.p.ledger.apply_fill(
            symbol, side, t.amount, t.price, t.fee_cost, fee_asset, fee_quote_value=fee_quote_value
        )
        return FillRow(
            exchange=EXCHANGE,
            trade_id=t.id,
            client_order_id=row.client_order_id,
            symbol=symbol,
            side=side,
            quantity=t.amount,
            price=t.price,
            fee=t.fee_cost,
            fee_asset=fee_asset,
            ts=fill_time(t.timestamp_ms, self.p.clock.now()),
            is_maker=t.is_maker,
            realized_pnl_usdt=acc.realized_pnl_usdt,
            fee_usdt=acc.fee_quote,
        )

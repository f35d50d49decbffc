"""The live broker's reconciliation (shell): on start and every `reconcile_interval_s`, open orders, recent
trades and balances are compared with the journal; what the journal does not know is adopted (ours) or
flagged (foreign), and any mismatch alerts. The diff is `rules.py`'s; this carries out what it finds."""

from __future__ import annotations

import asyncio

from libs.common.errors import TemporaryError
from services.execution import rules
from services.execution.adapter import ExchangeOrder, NotFound
from services.execution.broker import BrokerPorts
from services.execution.journal import NewOrder, OrderRow
from services.execution.ledger import ZERO
from services.execution.live_apply import JournalSync
from services.execution.live_client import BinanceClient
from services.execution.live_core import EXCHANGE, RESTING, past_ttl
from services.execution.rules import RECONCILIATION_MISMATCH, Divergence, diff_balances, diff_trade


def symbols_to_check(configured: list[str], rows: list[OrderRow], client: BinanceClient) -> list[str]:
    """The configured symbols and those of the journal's open orders, where the exchange lists them."""
    syms = set(configured) | {r.symbol for r in rows}
    return sorted(s for s in syms if client.listed(s))


class Reconciler:
    def __init__(self, ports: BrokerPorts, client: BinanceClient, sync: JournalSync) -> None:
        self.p, self.client, self.sync, self.journal = ports, client, sync, ports.journal
        self.first_balance_sync = True
        self.mismatches = ports.metrics.counter(
            "reconcile_mismatches_total", "Reconciliation findings", ["kind"]
        )

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.p.cfg.reconcile_interval_s)
            try:
                await self.reconcile()
            except TemporaryError as exc:
                self.p.log.warning("reconciliation postponed", error=str(exc))

    async def reconcile(self, first: bool = False) -> list[Divergence]:
        findings: list[Divergence] = []
        client, sync = self.client, self.sync
        async with self.p.lock:
            rows = await self.journal.open_orders()
            for row in rows:
                if row.status not in RESTING:
                    continue
                status = await sync.refresh(row)
                if past_ttl(status, row.created_at, self.p.clock.now(), self.p.cfg.limit_order_ttl_s):
                    try:  # a resting limit older than its time to live is cancelled (GTC emulating GTT)
                        o = await client.cancel_by_client_id(row.symbol, row.client_order_id)
                        await sync.apply(row.client_order_id, o)
                    except NotFound:
                        await sync.refresh(row)
            for symbol in symbols_to_check(self.p.symbols, rows, client):
                listed = await client.open_orders(symbol)
                journaled = {
                    o.client_order_id: await self.journal.get_order(o.client_order_id)
                    for o in listed
                    if o.client_order_id
                }
                by_coid = {o.client_order_id: o for o in listed if o.client_order_id}
                for d in rules.reconcile(symbol, journaled, listed):
                    findings.append(d)
                    if d.kind == "adopted_order":
                        await self._adopt(symbol, by_coid[d.client_order_id or ""])
                    elif d.kind == "status" and d.client_order_id:
                        await sync.apply(d.client_order_id, by_coid[d.client_order_id])
                if self.p.kill_switch_blocks():  # the kill switch is engaged: nothing may stay open
                    for o in listed:
                        try:
                            await client.call("cancel_order", str(o.id), symbol)
                        except NotFound:
                            pass
                for t in await client.trades(symbol, None, 50):
                    oid = str(t.order)
                    owner = await self.journal.find_by_exchange_id(oid)
                    if owner is None:
                        owner = await self._match_by_client_id(symbol, oid)
                    known = (
                        await self.journal.known_trade_ids(EXCHANGE, [owner.client_order_id])
                        if owner is not None
                        else set()
                    )
                    td = diff_trade(symbol, t, owner, known)
                    if td is not None:
                        findings.append(td)
                    if td is not None and td.kind == "missing_fill" and owner is not None:
                        await sync.refresh(owner)
            findings += await self._sync_balances(first)
        ok = not [f for f in findings if f.mismatch]
        await self.journal.record_reconciliation(self.p.instance, ok, [f.as_finding() for f in findings])
        for f in findings:
            self.mismatches.labels(kind=f.kind).inc()
        if not ok:
            await self.p.alert(
                *RECONCILIATION_MISMATCH,
                "; ".join(f"{f.kind}: {f.as_finding()}" for f in findings)[:1500],
            )
        return findings

    async def _match_by_client_id(self, symbol: str, exchange_order_id: str) -> OrderRow | None:
        """A trade of an order the journal has under its client id only (e.g. still UNKNOWN): link and apply it."""
        try:
            o = await self.client.order_by_id(symbol, exchange_order_id)
        except NotFound:
            return None
        cid = o.client_order_id
        row = await self.journal.get_order(cid) if cid else None
        if row is not None and cid:
            await self.sync.apply(cid, o)
            self.p.holds.release(symbol, cid)
            row = await self.journal.get_order(cid)
        return row

    async def _adopt(self, symbol: str, o: ExchangeOrder) -> None:
        """One of ours the journal lost: adopt it so that it is managed (and cancelled by the kill switch)."""
        cid = o.client_order_id or ""
        await self.journal.insert_order(
            NewOrder(
                client_order_id=cid,
                verdict_id=f"adopted:{o.id}",
                signal_id=None,
                symbol=symbol,
                side=o.side,
                order_type=o.type,
                quantity=o.amount,
                price_limit=o.price,
                mode="live",
                purpose="adopted",
            ),
            self.p.instance,
        )
        await self.journal.mark_sent(cid, "adopted")
        await self.sync.apply(cid, o)

    async def _sync_balances(self, first: bool) -> list[Divergence]:
        if any(r.status == "UNKNOWN" for r in await self.journal.open_orders()):
            # an order whose fills may already be at the exchange but not in the journal: comparing (and
            # adopting) balances now would count those fills twice once the order resolves
            return []
        exchange = await self.client.balances()
        ledger = self.p.ledger
        assets = set(exchange) | set(ledger.balances)
        findings = diff_balances(ledger.balances, exchange, first=first and self.first_balance_sync)
        for asset in assets:  # the exchange is the truth for balances
            mine = ledger.balance(asset)
            mine.free, mine.locked = exchange.get(asset, (ZERO, ZERO))
        self.first_balance_sync = False
        await self.journal.write_books(ledger, set(), assets)
        return findings

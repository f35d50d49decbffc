"""The live broker (shell): Binance Spot through ccxt async (`live_client.py`), the journal brought to the
exchange's word (`live_apply.py`), the reconciliation (`live_reconcile.py`), small decisions (`live_core.py`). Only built when `mode: live` (settings already
demand `live.confirm` and keys from the environment). The keys never reach a log line or an error message.

Rules it keeps:
- `newClientOrderId` is the journal's client order id; the journal, not the exchange, is the idempotency key
  (Binance accepts a reused id once the first order is done).
- The order is marked sent (committed) before the request leaves. After a timeout, a 5xx or -1006/-1007 the
  outcome is UNKNOWN: the order is looked up by client order id with backoff, never sent again, and its
  symbol is held until the exchange answers (or, after `unknown_resolve_timeout_s` of "does not exist",
  it is declared never placed, with an alert; a later reconciliation would still adopt it).
- 429 waits Retry-After, -1021 resynchronises the clock, both before the gate is checked again and the
  same order retried (the exchange refused them before execution).
- On start and every `reconcile_interval_s`: open orders, recent trades and balances are compared with the
  journal; what the journal does not know is adopted (ours) or flagged (foreign), and any mismatch alerts.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, cast

from libs.common.contracts import RiskVerdict, Side
from libs.common.errors import OperationalError, TemporaryError
from libs.common.markets import Markets
from libs.common.settings import LiveSettings
from services.execution.adapter import (
    Banned,
    ClockSkew,
    ExchangeOrder,
    ExchangeRejected,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    order_from_ccxt,
)
from services.execution.broker import BrokerPorts, GateCheck
from services.execution.core import backoff_s
from services.execution.journal import NewOrder, OrderRow
from services.execution.live_apply import JournalSync
from services.execution.live_client import BinanceClient, NotSent
from services.execution.live_core import send_spec
from services.execution.live_reconcile import Reconciler, symbols_to_check
from services.execution.rules import CREDENTIALS_REFUSED, FOREIGN_ORDER_CANCELLED, IP_BANNED, NEVER_PLACED


class LiveBroker:
    """The live broker: given its ports (journal, ledger, publisher, clock, locks; `broker.py`) and the live
    settings section, never the service."""

    knows_every_outcome = False

    def __init__(self, ports: BrokerPorts, live: LiveSettings) -> None:
        self.p = ports
        self.cfg = ports.cfg
        self.journal = ports.journal
        self.log = ports.log
        self.markets: Markets | None = ports.markets
        secrets = (live.api_key.get_secret_value(), live.api_secret.get_secret_value())
        self.client = BinanceClient(ports.cfg, secrets, ports.fence, ports.metrics)
        self.sync = JournalSync(ports, self.client)
        self.reconciler = Reconciler(ports, self.client, self.sync)
        self.banned_until: datetime | None = None
        self.resolvers: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        # the exchange's own filters (flatten quantities are rounded with them)
        self.markets = await self.client.connect()
        await self.recover()
        await self.reconciler.reconcile(first=True)
        self.p.spawn(self.reconciler.loop(), "live-reconcile")

    async def close(self) -> None:
        for t in self.resolvers.values():
            t.cancel()
        await self.client.close()

    # -- recovery after a restart -----------------------------------------------------------------
    async def recover(self) -> None:
        """Orders a previous run left open: never-sent ones are dropped, maybe-sent ones looked up."""
        for row in await self.journal.open_orders():
            coid = row.client_order_id
            if row.status == "SUBMITTED" and not row.sent:
                await self.journal.set_status(
                    coid, "REJECTED", reason="not sent: interrupted before the send (restart)"
                )
                await self.p.publisher.row(await self.journal.get_order(coid))
            elif row.status in ("SUBMITTED", "UNKNOWN"):
                await self._unknown(row, "restart after the send; outcome unknown")
            else:
                await self.sync.refresh(row)

    # -- sending ----------------------------------------------------------------------------------
    async def place(self, order: NewOrder, gate: GateCheck | None, verdict: RiskVerdict | None = None) -> str:
        """Send one journaled order (the caller holds the service lock). Returns the journal status."""
        coid, instance = order.client_order_id, self.p.instance
        limit = order.price_limit
        if limit is not None and self.markets is not None and order.symbol in self.markets:
            # on the tick, never worse
            limit = self.markets.round_price(order.symbol, limit, cast(Side, order.side))
        spec = send_spec(order.order_type, limit, coid)
        await self.journal.mark_sent(coid, instance)
        for _attempt in range(self.cfg.max_send_attempts):
            if gate is not None:  # immediately before the send, every attempt
                g = gate()
                if not g.allowed:
                    await self.journal.mark_sent(coid, instance, sent=False)
                    return await self.sync.reject(coid, g.reason)
            if self.banned_until is not None and self.p.clock.now() < self.banned_until:
                await self.journal.mark_sent(coid, instance, sent=False)
                return await self.sync.reject(coid, "ip_banned: not sent")
            try:
                resp = await self.client.create_order(
                    gate, order.symbol, spec.type, order.side.lower(), float(order.quantity), spec.price,
                    dict(spec.params),
                )  # fmt: skip
            except NotSent as exc:
                await self.journal.mark_sent(coid, instance, sent=False)
                return await self.sync.reject(
                    coid, f"{exc.reason}: not sent (closed while waiting for the rate limiter)"
                )
            except RateLimited as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
                self.log.warning("rate limited; waiting Retry-After", client_order_id=coid, wait_s=wait)
                await asyncio.sleep(wait)
                continue
            except ClockSkew:
                self.log.warning("clock outside recvWindow (-1021); resynchronising", client_order_id=coid)
                await self.client.resync_clock()
                continue
            except Banned as exc:
                self.banned_until = self.p.clock.now() + timedelta(seconds=exc.retry_after_s or 60.0)
                await self.p.alert(*IP_BANNED, str(exc))
                return await self.sync.reject(coid, "ip_banned")
            except ExchangeRejected as exc:
                return await self.sync.reject(coid, exc.reason)
            except NotFound as exc:
                return await self.sync.reject(coid, f"rejected: {exc}"[:200])
            except OutcomeUnknown as exc:
                row = await self.journal.get_order(coid)
                assert row is not None
                await self._unknown(row, str(exc))
                return "UNKNOWN"
            except OperationalError as exc:
                await self.p.alert(*CREDENTIALS_REFUSED, str(exc))
                raise
            return await self._after_send(coid, resp)
        return await self.sync.reject(coid, "send attempts exhausted (rate limit / clock)")

    async def _after_send(self, coid: str, resp: dict[str, Any]) -> str:
        """The exchange took the order. Anything that fails from here (a refusal of the trades look-up, a bad
        answer, the database) is an unknown outcome, resolved by client order id; never bad input."""
        try:
            return await self.sync.apply(coid, order_from_ccxt(resp))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            row = await self.journal.get_order(coid)
            if row is None or row.status != "SUBMITTED":
                raise  # the exchange's answer is journaled; what failed came after (publishing)
            self.log.warning(
                "order sent but its answer could not be applied; outcome unknown",
                client_order_id=coid,
                error=str(exc)[:300],
            )
            await self._unknown(row, f"sent; the exchange's answer could not be applied: {exc}"[:300])
            return "UNKNOWN"

    # -- unknown outcomes -------------------------------------------------------------------------
    async def _unknown(self, row: OrderRow, why: str) -> None:
        coid, symbol = row.client_order_id, row.symbol
        if row.status != "UNKNOWN":
            await self.journal.set_status(coid, "UNKNOWN", reason=why[:300])
            await self.p.publisher.after_update(coid, "UNKNOWN", why, [])
        self.p.holds.hold(symbol, coid)
        self.log.warning("order outcome unknown; holding the symbol", client_order_id=coid, symbol=symbol)
        if coid not in self.resolvers or self.resolvers[coid].done():
            self.resolvers[coid] = self.p.spawn(self._resolve(coid, symbol), f"resolve-{coid}")

    async def _resolve(self, coid: str, symbol: str) -> None:
        """Ask the exchange for this client order id until it answers; never send it again."""
        started, attempt, seen = self.p.clock.now(), 0, False
        give_up = timedelta(seconds=self.cfg.unknown_resolve_timeout_s)
        while True:
            found: ExchangeOrder | None
            try:
                found = await self.client.order_by_client_id(symbol, coid)
            except (NotFound, TemporaryError) as exc:
                found = None
                self.log.info("unknown order not found yet", client_order_id=coid, error=str(exc)[:200])
            except ExchangeRejected as exc:
                found = None
                self.log.warning("unknown order lookup refused", client_order_id=coid, error=str(exc)[:200])
            if found is not None:
                seen = True
                try:
                    async with self.p.lock:
                        status = await self.sync.apply(coid, found)
                        if self.p.kill_switch_blocks() and status in ("ACCEPTED", "PARTIALLY_FILLED"):
                            # it surfaced after the kill switch engaged: it may not stay open
                            try:
                                await self.sync.apply(
                                    coid, await self.client.cancel_by_client_id(symbol, coid)
                                )
                            except NotFound:
                                pass
                except (TemporaryError, ExchangeRejected, NotFound) as exc:
                    # found, but its trades or the cancel could not be read: still unknown, ask again
                    self.log.warning(
                        "unknown order found but not applied yet", client_order_id=coid, error=str(exc)[:200]
                    )
                else:
                    self.p.holds.release(symbol, coid)
                    return
            if not seen and self.p.clock.now() - started > give_up:
                async with self.p.lock:
                    row = await self.journal.get_order(coid)
                    if row is not None and row.status == "UNKNOWN":
                        await self.sync.reject(
                            coid,
                            f"not at the exchange after {self.cfg.unknown_resolve_timeout_s:.0f}s:"
                            " declared never placed",
                        )
                await self.p.alert(
                    *NEVER_PLACED,
                    f"{coid} on {symbol}: the exchange kept answering 'does not exist'",
                )
                self.p.holds.release(symbol, coid)
                return
            await asyncio.sleep(backoff_s(attempt, cap=self.cfg.unknown_backoff_max_s))
            attempt += 1

    async def sweep(self) -> int:
        """Cancel every open order (ours from the journal, then anything the exchange lists) and count what is
        still open at the exchange. Any exchange failure counts as 'not confirmed'."""
        try:
            rows = await self.journal.open_orders()
            for row in rows:
                coid = row.client_order_id
                if row.status == "SUBMITTED" and not row.sent:
                    await self.sync.reject(coid, "kill_switch: not sent")
                    continue
                try:
                    await self.sync.apply(coid, await self.client.cancel_by_client_id(row.symbol, coid))
                except NotFound:
                    await self.sync.refresh(row)  # already done (filled/cancelled) or not there (yet)
            cancelled = bool(rows)
            for symbol in symbols_to_check(self.p.symbols, rows, self.client):
                for o in await self.client.open_orders(symbol):
                    cancelled = True
                    try:
                        c = await self.client.cancel_by_id(symbol, str(o.id))
                    except NotFound:
                        continue
                    cid = o.client_order_id
                    if cid and await self.journal.get_order(cid) is not None:
                        await self.sync.apply(cid, c)
                    else:
                        await self.p.alert(
                            *FOREIGN_ORDER_CANCELLED,
                            f"{symbol} order {o.id} client id {cid}",
                        )
            if not cancelled:
                # nothing was open in the journal nor listed by the exchange just now (under the service lock
                # and the latch, so nothing can have been placed since): that listing is the confirmation
                return 0
            left = 0
            for symbol in symbols_to_check(self.p.symbols, rows, self.client):
                left += len(await self.client.open_orders(symbol))
            return left
        except (TemporaryError, ExchangeRejected) as exc:
            self.log.warning("cancel sweep incomplete", error=str(exc))
            return max(1, await self.journal.count_open())

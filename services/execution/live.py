"""The live broker (shell): Binance Spot through ccxt async. Only built when `mode: live` (settings already
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
import contextvars
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import tenacity

from libs.common.contracts import RiskVerdict
from libs.common.errors import OperationalError, TemporaryError
from libs.common.markets import Markets
from libs.common.settings import LiveSettings
from services.execution import rules
from services.execution.adapter import (
    Banned,
    ClockSkew,
    ExchangeOrder,
    ExchangeRejected,
    ExchangeTrade,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    balances_from_ccxt,
    is_retryable,
    map_ccxt_error,
    order_from_ccxt,
    trade_from_ccxt,
)
from services.execution.broker import BrokerPorts, GateCheck
from services.execution.core import backoff_s, status_from_exchange, transition
from services.execution.journal import FillRow, NewOrder, OrderRow
from services.execution.ledger import ZERO, split_symbol
from services.execution.rules import (
    CREDENTIALS_REFUSED,
    FOREIGN_ORDER_CANCELLED,
    IP_BANNED,
    NEVER_PLACED,
    RECONCILIATION_MISMATCH,
    Divergence,
    diff_balances,
    diff_trade,
)

EXCHANGE = "binance"

# The gate of the order being sent by this task, read again by the HTTP layer right before each request
# of `create_order` (after ccxt's rate limiter, which can hold a request for a while).
_ORDER_GATE: contextvars.ContextVar[GateCheck | None] = contextvars.ContextVar("order_gate", default=None)


class NotSent(Exception):
    """The gate closed while the request waited in ccxt (rate limiter): nothing left for the exchange."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def rebase_urls(urls_api: dict[str, Any], base: str) -> dict[str, Any]:
    """ccxt's `urls['api']` with every Binance host replaced by `base` (paths kept). Used only with
    `execution.live_api_url` (tests point it at the fake Binance server)."""
    out: dict[str, Any] = {}
    for k, v in urls_api.items():
        if isinstance(v, str):
            parts = urlsplit(v)
            if parts.scheme in ("http", "https"):
                out[k] = base.rstrip("/") + parts.path
            else:
                out[k] = v
        elif isinstance(v, dict):
            out[k] = rebase_urls(v, base)
        else:
            out[k] = v
    return out


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
        self._secrets = (live.api_key.get_secret_value(), live.api_secret.get_secret_value())
        self.banned_until: datetime | None = None
        self.resolvers: dict[str, asyncio.Task[None]] = {}
        self.first_balance_sync = True
        self.ex = ccxt.binance(
            {
                "apiKey": self._secrets[0],
                "secret": self._secrets[1],
                "enableRateLimit": True,
                "timeout": self.cfg.request_timeout_ms,
                **(
                    {"rateLimit": self.cfg.live_rate_limit_ms}
                    if self.cfg.live_rate_limit_ms is not None
                    else {}
                ),
            }
        )
        self.ex.options.update(
            {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "recvWindow": self.cfg.recv_window_ms,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                "defaultType": "spot",
            }
        )
        if self.cfg.live_api_url:
            self.ex.urls["api"] = rebase_urls(self.ex.urls["api"], self.cfg.live_api_url)
        self._guard_order_requests()
        m = ports.metrics
        self.errors = m.counter("exchange_errors_total", "Exchange errors by kind", ["kind"])
        self.mismatches = m.counter("reconcile_mismatches_total", "Reconciliation findings", ["kind"])

    def _guard_order_requests(self) -> None:
        """Every HTTP request ccxt makes for an order send checks the order's gate once more, after the rate
        limiter and right before the request goes out, and is counted in the send fence until it finishes
        (the kill switch's notice waits for the fence; see fence.py). No await between check and entry."""
        plain = self.ex.fetch
        fence = self.p.fence

        async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            gate = _ORDER_GATE.get()
            if gate is None or method.upper() != "POST":  # only a POST places an order
                return await plain(url, method, headers, body)
            g = gate()
            if not g.allowed:
                raise NotSent(g.reason)
            with fence.sending():
                return await plain(url, method, headers, body)

        self.ex.fetch = fetch

    # -- ccxt calls, through the one adapter -------------------------------------------------------
    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.ex, method)(*args, **kwargs)
        except ccxt.BaseError as exc:
            err = map_ccxt_error(
                exc, secrets=self._secrets, headers=getattr(self.ex, "last_response_headers", None)
            )
            self.errors.labels(kind=type(err).__name__).inc()
            raise err from None

    async def call_retrying(self, method: str, *args: Any, attempts: int = 5, **kwargs: Any) -> Any:
        """For queries (never for sending an order): retry temporary errors (`adapter.is_retryable`) with
        exponential backoff and jitter, or the server's Retry-After; -1021 resynchronises the clock first."""

        async def once() -> Any:
            try:
                return await self.call(method, *args, **kwargs)
            except ClockSkew:
                await self.call("load_time_difference")
                raise

        async for attempt in tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._query_wait,
            retry=tenacity.retry_if_exception(is_retryable),
            reraise=True,
        ):
            with attempt:
                return await once()
        raise TemporaryError(f"{method} failed after {attempts} attempts")  # pragma: no cover (reraise)

    def _query_wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, ClockSkew):
            return 0.0  # resynchronised already: ask again at once
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after:
            return float(retry_after)
        cap = self.cfg.unknown_backoff_max_s
        return float(tenacity.wait_exponential_jitter(initial=0.25, max=cap, jitter=0.25)(state))

    # typed answers (adapter.py normalises ccxt's dicts once)
    async def _order_by_client_id(self, symbol: str, coid: str, *, retrying: bool = False) -> ExchangeOrder:
        call = self.call_retrying if retrying else self.call
        return order_from_ccxt(await call("fetch_order", "", symbol, {"origClientOrderId": coid}))

    async def _cancel_by_client_id(self, symbol: str, coid: str) -> ExchangeOrder:
        return order_from_ccxt(await self.call("cancel_order", "", symbol, {"origClientOrderId": coid}))

    async def _open_orders(self, symbol: str) -> list[ExchangeOrder]:
        return [order_from_ccxt(o) for o in await self.call_retrying("fetch_open_orders", symbol)]

    async def _trades(self, symbol: str, *args: Any) -> list[ExchangeTrade]:
        return [trade_from_ccxt(t) for t in await self.call_retrying("fetch_my_trades", symbol, *args)]

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.call_retrying("load_markets")
        # live filters come from the exchange itself (flatten quantities are rounded with them)
        self.markets = Markets.from_ccxt(self.ex.markets, source="exchange")
        await self.call_retrying("load_time_difference")
        self.ex.options["adjustForTimeDifference"] = True
        await self.recover()
        await self.reconcile(first=True)
        self.p.spawn(self._reconcile_loop(), "live-reconcile")

    async def close(self) -> None:
        for t in self.resolvers.values():
            t.cancel()
        await self.ex.close()

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reconcile_interval_s)
            try:
                await self.reconcile()
            except TemporaryError as exc:
                self.log.warning("reconciliation postponed", error=str(exc))

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
                await self._refresh(row)

    # -- sending ----------------------------------------------------------------------------------
    async def place(self, order: NewOrder, gate: GateCheck | None, verdict: RiskVerdict | None = None) -> str:
        """Send one journaled order (the caller holds the service lock). Returns the journal status."""
        coid, instance = order.client_order_id, self.p.instance
        limit = order.price_limit
        if limit is not None and self.markets is not None and order.symbol in self.markets:
            limit = self.markets.round_price(order.symbol, limit, order.side)  # on the tick, never worse
        params: dict[str, Any]
        if order.order_type == "MARKET" and limit is not None:
            # a verdict's market order never fills beyond its price_limit: LIMIT IOC at that price
            otype, price, params = "limit", float(limit), {"timeInForce": "IOC"}
        elif order.order_type == "MARKET":
            otype, price, params = "market", None, {}
        else:
            assert limit is not None
            otype, price, params = "limit", float(limit), {"timeInForce": "GTC"}
        params["newClientOrderId"] = coid
        await self.journal.mark_sent(coid, instance)
        for _attempt in range(self.cfg.max_send_attempts):
            if gate is not None:  # immediately before the send, every attempt
                g = gate()
                if not g.allowed:
                    await self.journal.mark_sent(coid, instance, sent=False)
                    return await self._reject(coid, g.reason)
            if self.banned_until is not None and self.p.clock.now() < self.banned_until:
                await self.journal.mark_sent(coid, instance, sent=False)
                return await self._reject(coid, "ip_banned: not sent")
            try:
                resp = await self._create_order(
                    gate, order.symbol, otype, order.side.lower(), float(order.quantity), price, dict(params)
                )
            except NotSent as exc:
                await self.journal.mark_sent(coid, instance, sent=False)
                return await self._reject(
                    coid, f"{exc.reason}: not sent (closed while waiting for the rate limiter)"
                )
            except RateLimited as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
                self.log.warning("rate limited; waiting Retry-After", client_order_id=coid, wait_s=wait)
                await asyncio.sleep(wait)
                continue
            except ClockSkew:
                self.log.warning("clock outside recvWindow (-1021); resynchronising", client_order_id=coid)
                await self.call_retrying("load_time_difference")
                continue
            except Banned as exc:
                self.banned_until = self.p.clock.now() + timedelta(seconds=exc.retry_after_s or 60.0)
                await self.p.alert(*IP_BANNED, str(exc))
                return await self._reject(coid, "ip_banned")
            except ExchangeRejected as exc:
                return await self._reject(coid, exc.reason)
            except NotFound as exc:
                return await self._reject(coid, f"rejected: {exc}"[:200])
            except OutcomeUnknown as exc:
                row = await self.journal.get_order(coid)
                assert row is not None
                await self._unknown(row, str(exc))
                return "UNKNOWN"
            except OperationalError as exc:
                await self.p.alert(*CREDENTIALS_REFUSED, str(exc))
                raise
            return await self._after_send(coid, resp)
        return await self._reject(coid, "send attempts exhausted (rate limit / clock)")

    async def _create_order(self, gate: GateCheck | None, *args: Any) -> Any:
        """`create_order` with the order's gate visible to the HTTP layer for this call only (reset before
        the caller handles the outcome, so tasks it spawns, such as a resolver, never see it)."""
        if gate is None:  # a flatten order: the kill switch itself asked for it
            return await self.call("create_order", *args)
        token = _ORDER_GATE.set(gate)
        try:
            return await self.call("create_order", *args)
        finally:
            _ORDER_GATE.reset(token)

    async def _after_send(self, coid: str, resp: dict[str, Any]) -> str:
        """The exchange took the order. Anything that fails from here (a refusal of the trades look-up, a bad
        answer, the database) is an unknown outcome, resolved by client order id; never bad input."""
        try:
            return await self._apply(coid, order_from_ccxt(resp))
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

    async def _reject(self, coid: str, reason: str) -> str:
        await self.journal.set_status(coid, "REJECTED", reason=reason)
        await self.p.publisher.after_update(coid, "REJECTED", reason, [])
        return "REJECTED"

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
                found = await self._order_by_client_id(symbol, coid)
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
                        status = await self._apply(coid, found)
                        if self.p.kill_switch_blocks() and status in ("ACCEPTED", "PARTIALLY_FILLED"):
                            # it surfaced after the kill switch engaged: it may not stay open
                            try:
                                await self._apply(coid, await self._cancel_by_client_id(symbol, coid))
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
                        await self._reject(
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

    # -- applying the exchange's word -------------------------------------------------------------
    async def _refresh(self, row: OrderRow) -> str:
        try:
            o = await self._order_by_client_id(row.symbol, row.client_order_id, retrying=True)
        except NotFound:
            return row.status
        return await self._apply(row.client_order_id, o)

    async def _apply(self, coid: str, o: ExchangeOrder) -> str:
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

    async def _new_fills(self, row: OrderRow, o: ExchangeOrder) -> list[FillRow]:
        """Trades of this order the journal does not have yet, booked into the ledger (caller commits)."""
        known = await self.journal.known_trade_ids(EXCHANGE, [row.client_order_id])
        trades = list(o.trades)
        have = sum((t.amount for t in trades), ZERO)
        if o.filled > 0 and have < o.filled and o.id is not None:
            trades = [
                t for t in await self._trades(row.symbol, None, None, {"orderId": o.id}) if t.order == o.id
            ]
        out: list[FillRow] = []
        seen: set[str] = set()
        for t in trades:
            if t.id in known or t.id in seen:
                continue
            seen.add(t.id)
            out.append(self._book(row, t))
        return out

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
        ts = (
            datetime.fromtimestamp(t.timestamp_ms / 1000, UTC)
            if t.timestamp_ms is not None
            else self.p.clock.now()
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
            ts=ts,
            is_maker=t.is_maker,
            realized_pnl_usdt=acc.realized_pnl_usdt,
            fee_usdt=acc.fee_quote,
        )

    # -- the kill switch --------------------------------------------------------------------------
    def _symbols(self, rows: list[OrderRow]) -> list[str]:
        syms = set(self.p.symbols) | {r.symbol for r in rows}
        return sorted(s for s in syms if s in self.ex.markets)

    async def sweep(self) -> int:
        """Cancel every open order (ours from the journal, then anything the exchange lists) and count what is
        still open at the exchange. Any exchange failure counts as 'not confirmed'."""
        try:
            rows = await self.journal.open_orders()
            for row in rows:
                coid = row.client_order_id
                if row.status == "SUBMITTED" and not row.sent:
                    await self._reject(coid, "kill_switch: not sent")
                    continue
                try:
                    await self._apply(coid, await self._cancel_by_client_id(row.symbol, coid))
                except NotFound:
                    await self._refresh(row)  # already done (filled/cancelled) or not there (yet)
            cancelled = bool(rows)
            for symbol in self._symbols(rows):
                for o in await self._open_orders(symbol):
                    cancelled = True
                    try:
                        c = order_from_ccxt(await self.call("cancel_order", str(o.id), symbol))
                    except NotFound:
                        continue
                    cid = o.client_order_id
                    if cid and await self.journal.get_order(cid) is not None:
                        await self._apply(cid, c)
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
            for symbol in self._symbols(rows):
                left += len(await self._open_orders(symbol))
            return left
        except (TemporaryError, ExchangeRejected) as exc:
            self.log.warning("cancel sweep incomplete", error=str(exc))
            return max(1, await self.journal.count_open())

    # -- reconciliation (the diff is `rules.py`'s; this carries out what it finds) -----------------
    async def reconcile(self, first: bool = False) -> list[Divergence]:
        findings: list[Divergence] = []
        async with self.p.lock:
            rows = await self.journal.open_orders()
            ttl = self.cfg.limit_order_ttl_s
            for row in rows:
                if row.status not in ("ACCEPTED", "PARTIALLY_FILLED"):
                    continue
                status = await self._refresh(row)
                if (
                    ttl
                    and status in ("ACCEPTED", "PARTIALLY_FILLED")
                    and (self.p.clock.now() - row.created_at).total_seconds() > ttl
                ):
                    try:  # a resting limit older than its time to live is cancelled (GTC emulating GTT)
                        o = await self._cancel_by_client_id(row.symbol, row.client_order_id)
                        await self._apply(row.client_order_id, o)
                    except NotFound:
                        await self._refresh(row)
            for symbol in self._symbols(rows):
                listed = await self._open_orders(symbol)
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
                        await self._apply(d.client_order_id, by_coid[d.client_order_id])
                if self.p.kill_switch_blocks():  # the kill switch is engaged: nothing may stay open
                    for o in listed:
                        try:
                            await self.call("cancel_order", str(o.id), symbol)
                        except NotFound:
                            pass
                for t in await self._trades(symbol, None, 50):
                    oid = str(t.order)
                    owner = await self.journal.find_by_exchange_id(oid)
                    if owner is None:
                        owner = await self._match_by_client_id(symbol, oid)
                    known = (
                        await self.journal.known_trade_ids(EXCHANGE, [owner.client_order_id])
                        if owner is not None
                        else set()
                    )
                    d = diff_trade(symbol, t, owner, known)
                    if d is not None:
                        findings.append(d)
                    if d is not None and d.kind == "missing_fill" and owner is not None:
                        await self._refresh(owner)
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
            o = order_from_ccxt(await self.call_retrying("fetch_order", exchange_order_id, symbol))
        except NotFound:
            return None
        cid = o.client_order_id
        row = await self.journal.get_order(cid) if cid else None
        if row is not None and cid:
            await self._apply(cid, o)
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
        await self._apply(cid, o)

    async def _sync_balances(self, first: bool) -> list[Divergence]:
        if any(r.status == "UNKNOWN" for r in await self.journal.open_orders()):
            # an order whose fills may already be at the exchange but not in the journal: comparing (and
            # adopting) balances now would count those fills twice once the order resolves
            return []
        exchange = balances_from_ccxt(await self.call_retrying("fetch_balance"))
        ledger = self.p.ledger
        assets = set(exchange) | set(ledger.balances)
        findings = diff_balances(ledger.balances, exchange, first=first and self.first_balance_sync)
        for asset in assets:  # the exchange is the truth for balances
            mine = ledger.balance(asset)
            mine.free, mine.locked = exchange.get(asset, (ZERO, ZERO))
        self.first_balance_sync = False
        await self.journal.write_books(ledger, set(), assets)
        return findings

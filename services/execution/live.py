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
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import tenacity

from libs.common.contracts import utcnow
from libs.common.errors import OperationalError, TemporaryError
from libs.common.markets import Markets
from services.execution.adapter import (
    Banned,
    ClockSkew,
    ExchangeRejected,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    is_retryable,
    map_ccxt_error,
)
from services.execution.core import backoff_s, is_ours, status_from_exchange, transition
from services.execution.journal import FillRow, NewOrder
from services.execution.ledger import ZERO, split_symbol

EXCHANGE = "binance"

# The gate of the order being sent by this task, read again by the HTTP layer right before each request
# of `create_order` (after ccxt's rate limiter, which can hold a request for a while).
_ORDER_GATE: contextvars.ContextVar[Callable[[], Any] | None] = contextvars.ContextVar(
    "order_gate", default=None
)


class NotSent(Exception):
    """The gate closed while the request waited in ccxt (rate limiter): nothing left for the exchange."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _d(x: Any) -> Decimal:
    return Decimal(str(x)) if x is not None else ZERO


def rebase_urls(urls_api: dict, base: str) -> dict:
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
    def __init__(self, svc) -> None:
        self.svc = svc
        self.rt = svc.rt
        self.cfg = svc.cfg
        self.journal = svc.journal
        live = svc.settings.live
        self._secrets = (live.api_key.get_secret_value(), live.api_secret.get_secret_value())
        self.banned_until = 0.0
        self.resolvers: dict[str, asyncio.Task] = {}
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
        m = self.rt.metrics
        self.errors = m.counter("exchange_errors_total", "Exchange errors by kind", ["kind"])
        self.mismatches = m.counter("reconcile_mismatches_total", "Reconciliation findings", ["kind"])

    def _guard_order_requests(self) -> None:
        """Every HTTP request ccxt makes for an order send checks the order's gate once more, after the rate
        limiter and right before the request goes out, and is counted in the send fence until it finishes
        (the kill switch's notice waits for the fence; see fence.py). No await between check and entry."""
        plain = self.ex.fetch
        fence = self.svc.fence

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
        return tenacity.wait_exponential_jitter(initial=0.25, max=cap, jitter=0.25)(state)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.call_retrying("load_markets")
        # live filters come from the exchange itself (flatten quantities are rounded with them)
        self.svc.markets = Markets.from_ccxt(self.ex.markets, source="exchange")
        await self.call_retrying("load_time_difference")
        self.ex.options["adjustForTimeDifference"] = True
        await self.recover()
        await self.reconcile(first=True)
        self.rt.spawn(self._reconcile_loop(), "live-reconcile")

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
                self.rt.log.warning("reconciliation postponed", error=str(exc))

    # -- recovery after a restart -----------------------------------------------------------------
    async def recover(self) -> None:
        """Orders a previous run left open: never-sent ones are dropped, maybe-sent ones looked up."""
        for row in await self.journal.open_orders():
            coid = row["client_order_id"]
            if row["status"] == "SUBMITTED" and row["sent_at"] is None:
                await self.journal.set_status(
                    coid, "REJECTED", reason="not sent: interrupted before the send (restart)"
                )
                await self.svc._publish_row(await self.journal.get_order(coid))
            elif row["status"] in ("SUBMITTED", "UNKNOWN"):
                await self._unknown(row, "restart after the send; outcome unknown")
            else:
                await self._refresh(row)

    # -- sending ----------------------------------------------------------------------------------
    async def place(self, order: NewOrder, gate: Callable[[], Any] | None) -> str:
        """Send one journaled order (the caller holds the service lock). Returns the journal status."""
        coid = order.client_order_id
        limit = order.price_limit
        if limit is not None and self.svc.markets is not None and order.symbol in self.svc.markets:
            limit = self.svc.markets.round_price(order.symbol, limit, order.side)  # on the tick, never worse
        if order.order_type == "MARKET" and limit is not None:
            # a verdict's market order never fills beyond its price_limit: LIMIT IOC at that price
            otype, price, params = "limit", float(limit), {"timeInForce": "IOC"}
        elif order.order_type == "MARKET":
            otype, price, params = "market", None, {}
        else:
            otype, price, params = "limit", float(limit), {"timeInForce": "GTC"}
        params["newClientOrderId"] = coid
        await self.journal.mark_sent(coid, self.rt.instance)
        for _attempt in range(self.cfg.max_send_attempts):
            if gate is not None:  # immediately before the send, every attempt
                g = gate()
                if not g.allowed:
                    await self.journal.mark_sent(coid, self.rt.instance, sent=False)
                    return await self._reject(coid, g.reason)
            if time.monotonic() < self.banned_until:
                await self.journal.mark_sent(coid, self.rt.instance, sent=False)
                return await self._reject(coid, "ip_banned: not sent")
            try:
                resp = await self._create_order(
                    gate, order.symbol, otype, order.side.lower(), float(order.quantity), price, dict(params)
                )
            except NotSent as exc:
                await self.journal.mark_sent(coid, self.rt.instance, sent=False)
                return await self._reject(
                    coid, f"{exc.reason}: not sent (closed while waiting for the rate limiter)"
                )
            except RateLimited as exc:
                wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
                self.rt.log.warning("rate limited; waiting Retry-After", client_order_id=coid, wait_s=wait)
                await asyncio.sleep(wait)
                continue
            except ClockSkew:
                self.rt.log.warning("clock outside recvWindow (-1021); resynchronising", client_order_id=coid)
                await self.call_retrying("load_time_difference")
                continue
            except Banned as exc:
                self.banned_until = time.monotonic() + (exc.retry_after_s or 60.0)
                await self.rt.alert("SEV-1", "exchange banned this IP (418)", str(exc))
                return await self._reject(coid, "ip_banned")
            except ExchangeRejected as exc:
                return await self._reject(coid, exc.reason)
            except NotFound as exc:
                return await self._reject(coid, f"rejected: {exc}"[:200])
            except OutcomeUnknown as exc:
                row = await self.journal.get_order(coid)
                await self._unknown(row, str(exc))
                return "UNKNOWN"
            except OperationalError as exc:
                await self.rt.alert("SEV-1", "exchange refused our credentials", str(exc))
                raise
            return await self._after_send(coid, resp)
        return await self._reject(coid, "send attempts exhausted (rate limit / clock)")

    async def _create_order(self, gate: Callable[[], Any] | None, *args: Any) -> Any:
        """`create_order` with the order's gate visible to the HTTP layer for this call only (reset before
        the caller handles the outcome, so tasks it spawns, such as a resolver, never see it)."""
        if gate is None:  # a flatten order: the kill switch itself asked for it
            return await self.call("create_order", *args)
        token = _ORDER_GATE.set(gate)
        try:
            return await self.call("create_order", *args)
        finally:
            _ORDER_GATE.reset(token)

    async def _after_send(self, coid: str, resp: dict) -> str:
        """The exchange took the order. Anything that fails from here (a refusal of the trades look-up, a bad
        answer, the database) is an unknown outcome, resolved by client order id; never bad input."""
        try:
            return await self._apply(coid, resp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            row = await self.journal.get_order(coid)
            if row is None or row["status"] != "SUBMITTED":
                raise  # the exchange's answer is journaled; what failed came after (publishing)
            self.rt.log.warning(
                "order sent but its answer could not be applied; outcome unknown",
                client_order_id=coid,
                error=str(exc)[:300],
            )
            await self._unknown(row, f"sent; the exchange's answer could not be applied: {exc}"[:300])
            return "UNKNOWN"

    async def _reject(self, coid: str, reason: str) -> str:
        await self.journal.set_status(coid, "REJECTED", reason=reason)
        await self.svc._after_update(coid, "REJECTED", reason, [])
        return "REJECTED"

    # -- unknown outcomes -------------------------------------------------------------------------
    async def _unknown(self, row: dict, why: str) -> None:
        coid, symbol = row["client_order_id"], row["symbol"]
        if row["status"] != "UNKNOWN":
            await self.journal.set_status(coid, "UNKNOWN", reason=why[:300])
            await self.svc._after_update(coid, "UNKNOWN", why, [])
        self.svc.held[symbol] = f"unknown outcome of {coid}"
        self.svc.held_gauge.set(len(self.svc.held))
        self.rt.log.warning("order outcome unknown; holding the symbol", client_order_id=coid, symbol=symbol)
        if coid not in self.resolvers or self.resolvers[coid].done():
            self.resolvers[coid] = self.rt.spawn(self._resolve(coid, symbol), f"resolve-{coid}")

    async def _resolve(self, coid: str, symbol: str) -> None:
        """Ask the exchange for this client order id until it answers; never send it again."""
        started, attempt, seen = time.monotonic(), 0, False
        while True:
            try:
                found = await self.call("fetch_order", "", symbol, {"origClientOrderId": coid})
            except (NotFound, TemporaryError) as exc:
                found = None
                self.rt.log.info("unknown order not found yet", client_order_id=coid, error=str(exc)[:200])
            except ExchangeRejected as exc:
                found = None
                self.rt.log.warning(
                    "unknown order lookup refused", client_order_id=coid, error=str(exc)[:200]
                )
            if found is not None:
                seen = True
                try:
                    async with self.svc.lock:
                        status = await self._apply(coid, found)
                        if self.svc.latch.blocks and status in ("ACCEPTED", "PARTIALLY_FILLED"):
                            # it surfaced after the kill switch engaged: it may not stay open
                            try:
                                await self._apply(
                                    coid,
                                    await self.call("cancel_order", "", symbol, {"origClientOrderId": coid}),
                                )
                            except NotFound:
                                pass
                except (TemporaryError, ExchangeRejected, NotFound) as exc:
                    # found, but its trades or the cancel could not be read: still unknown, ask again
                    self.rt.log.warning(
                        "unknown order found but not applied yet", client_order_id=coid, error=str(exc)[:200]
                    )
                else:
                    self._release(symbol, coid)
                    return
            if not seen and time.monotonic() - started > self.cfg.unknown_resolve_timeout_s:
                async with self.svc.lock:
                    row = await self.journal.get_order(coid)
                    if row is not None and row["status"] == "UNKNOWN":
                        await self._reject(
                            coid,
                            f"not at the exchange after {self.cfg.unknown_resolve_timeout_s:.0f}s:"
                            " declared never placed",
                        )
                await self.rt.alert(
                    "SEV-2",
                    "order with unknown outcome declared never placed",
                    f"{coid} on {symbol}: the exchange kept answering 'does not exist'",
                )
                self._release(symbol, coid)
                return
            await asyncio.sleep(backoff_s(attempt, cap=self.cfg.unknown_backoff_max_s))
            attempt += 1

    def _release(self, symbol: str, coid: str) -> None:
        if self.svc.held.get(symbol, "").endswith(coid):
            self.svc.held.pop(symbol, None)
        self.svc.held_gauge.set(len(self.svc.held))

    # -- applying the exchange's word -------------------------------------------------------------
    async def _refresh(self, row: dict) -> str:
        try:
            o = await self.call_retrying(
                "fetch_order", "", row["symbol"], {"origClientOrderId": row["client_order_id"]}
            )
        except NotFound:
            return row["status"]
        return await self._apply(row["client_order_id"], o)

    async def _apply(self, coid: str, o: dict) -> str:
        """Bring the journal to the exchange's view of one of our orders: status, fills, books."""
        row = await self.journal.get_order(coid)
        if row is None:
            return "UNKNOWN"
        amount = _d(o.get("amount")) or _d(row["quantity"])
        filled = _d(o.get("filled"))
        status = status_from_exchange(o.get("status"), filled, amount)
        exchange_id = str(o["id"]) if o.get("id") is not None else None
        fills = await self._new_fills(row, o, exchange_id, filled)
        t = transition(row["status"], status, adopting=row["status"] in ("REJECTED", "UNKNOWN"))
        if not t.allowed and not fills:
            return row["status"]
        final = status if t.allowed else row["status"]
        base, quote = split_symbol(row["symbol"])
        avg = _d(o.get("average")) if o.get("average") else None
        inserted = await self.journal.commit_order_update(
            coid,
            status=final,
            reason=None,
            filled=max(filled, _d(row["filled_quantity"])),
            average_price=avg,
            fee_usdt_add=sum((f.fee_usdt for f in fills), ZERO),
            locked=ZERO,
            trades=None,
            fills=fills,
            ledger=self.svc.ledger,
            symbol=row["symbol"],
            assets={base, quote} | {f.fee_asset for f in fills},
            exchange_order_id=exchange_id,
        )
        await self.svc._after_update(coid, final, "", inserted)
        return final

    async def _new_fills(self, row: dict, o: dict, exchange_id: str | None, filled: Decimal) -> list[FillRow]:
        """Trades of this order the journal does not have yet, booked into the ledger (caller commits)."""
        known = await self.journal.known_trade_ids(EXCHANGE, [row["client_order_id"]])
        trades = [t for t in (o.get("trades") or []) if t.get("id")]
        have = sum((_d(t.get("amount")) for t in trades), ZERO)
        if filled > 0 and have < filled and exchange_id is not None:
            trades = await self.call_retrying(
                "fetch_my_trades", row["symbol"], None, None, {"orderId": exchange_id}
            )
            trades = [t for t in trades if str(t.get("order")) == exchange_id]
        out: list[FillRow] = []
        seen: set[str] = set()
        for t in trades:
            tid = str(t["id"])
            if tid in known or tid in seen:
                continue
            seen.add(tid)
            out.append(self._book(row, t))
        return out

    def _book(self, row: dict, t: dict) -> FillRow:
        symbol, side = row["symbol"], row["side"]
        qty, price = _d(t.get("amount")), _d(t.get("price"))
        fee = t.get("fee") or {}
        fee_cost, fee_asset = _d(fee.get("cost")), fee.get("currency") or split_symbol(symbol)[1]
        fee_quote_value = None
        base, quote = split_symbol(symbol)
        if fee_asset not in (base, quote):
            ref = self.svc.tick_for(f"{fee_asset}/{quote}")
            fee_quote_value = fee_cost * ref.last if ref is not None else ZERO
        acc = self.svc.ledger.apply_fill(
            symbol, side, qty, price, fee_cost, fee_asset, fee_quote_value=fee_quote_value
        )
        ts = datetime.fromtimestamp(t["timestamp"] / 1000, UTC) if t.get("timestamp") else utcnow()
        return FillRow(
            exchange=EXCHANGE,
            trade_id=str(t["id"]),
            client_order_id=row["client_order_id"],
            symbol=symbol,
            side=side,
            quantity=qty,
            price=price,
            fee=fee_cost,
            fee_asset=fee_asset,
            ts=ts,
            is_maker=t.get("takerOrMaker") == "maker",
            realized_pnl_usdt=acc.realized_pnl_usdt,
            fee_usdt=acc.fee_quote,
        )

    # -- the kill switch --------------------------------------------------------------------------
    def _symbols(self, rows: list[dict]) -> list[str]:
        syms = set(self.svc.settings.symbols) | {r["symbol"] for r in rows}
        return sorted(s for s in syms if s in self.ex.markets)

    async def sweep(self) -> int:
        """Cancel every open order (ours from the journal, then anything the exchange lists) and count what is
        still open at the exchange. Any exchange failure counts as 'not confirmed'."""
        try:
            rows = await self.journal.open_orders()
            for row in rows:
                coid = row["client_order_id"]
                if row["status"] == "SUBMITTED" and row["sent_at"] is None:
                    await self._reject(coid, "kill_switch: not sent")
                    continue
                try:
                    o = await self.call("cancel_order", "", row["symbol"], {"origClientOrderId": coid})
                    await self._apply(coid, o)
                except NotFound:
                    await self._refresh(row)  # already done (filled/cancelled) or not there (yet)
            cancelled = bool(rows)
            for symbol in self._symbols(rows):
                for o in await self.call_retrying("fetch_open_orders", symbol):
                    cancelled = True
                    try:
                        c = await self.call("cancel_order", str(o["id"]), symbol)
                    except NotFound:
                        continue
                    cid = o.get("clientOrderId")
                    if cid and await self.journal.get_order(cid) is not None:
                        await self._apply(cid, c)
                    else:
                        await self.rt.alert(
                            "SEV-2",
                            "kill switch cancelled an order the journal does not know",
                            f"{symbol} order {o['id']} client id {cid}",
                        )
            if not cancelled:
                # nothing was open in the journal nor listed by the exchange just now (under the service lock
                # and the latch, so nothing can have been placed since): that listing is the confirmation
                return 0
            left = 0
            for symbol in self._symbols(rows):
                left += len(await self.call_retrying("fetch_open_orders", symbol))
            return left
        except (TemporaryError, ExchangeRejected) as exc:
            self.rt.log.warning("cancel sweep incomplete", error=str(exc))
            return max(1, await self.journal.count_open())

    # -- reconciliation ---------------------------------------------------------------------------
    async def reconcile(self, first: bool = False) -> list[dict]:
        findings: list[dict] = []
        async with self.svc.lock:
            rows = await self.journal.open_orders()
            ttl = self.cfg.limit_order_ttl_s
            for row in rows:
                if row["status"] not in ("ACCEPTED", "PARTIALLY_FILLED"):
                    continue
                status = await self._refresh(row)
                if (
                    ttl
                    and status in ("ACCEPTED", "PARTIALLY_FILLED")
                    and (utcnow() - row["created_at"]).total_seconds() > ttl
                ):
                    try:  # a resting limit older than its time to live is cancelled (GTC emulating GTT)
                        o = await self.call(
                            "cancel_order", "", row["symbol"], {"origClientOrderId": row["client_order_id"]}
                        )
                        await self._apply(row["client_order_id"], o)
                    except NotFound:
                        await self._refresh(row)
            for symbol in self._symbols(rows):
                for o in await self.call_retrying("fetch_open_orders", symbol):
                    cid = o.get("clientOrderId")
                    row = await self.journal.get_order(cid) if cid else None
                    if row is None:
                        findings.append(await self._adopt_or_flag(symbol, o))
                    elif row["status"] not in ("ACCEPTED", "PARTIALLY_FILLED"):
                        findings.append(
                            {
                                "kind": "status",
                                "client_order_id": cid,
                                "journal": row["status"],
                                "exchange": o.get("status"),
                            }
                        )
                        await self._apply(cid, o)
                    if self.svc.latch.blocks:  # the kill switch is engaged: nothing may stay open
                        try:
                            await self.call("cancel_order", str(o["id"]), symbol)
                        except NotFound:
                            pass
                for t in await self.call_retrying("fetch_my_trades", symbol, None, 50):
                    oid = str(t.get("order"))
                    row = await self.journal.find_by_exchange_id(oid)
                    if row is None:
                        row = await self._match_by_client_id(symbol, oid)
                    if row is None:
                        findings.append(
                            {
                                "kind": "foreign_trade",
                                "symbol": symbol,
                                "order": oid,
                                "trade": str(t.get("id")),
                            }
                        )
                        continue
                    if str(t["id"]) not in await self.journal.known_trade_ids(
                        EXCHANGE, [row["client_order_id"]]
                    ):
                        findings.append(
                            {
                                "kind": "missing_fill",
                                "client_order_id": row["client_order_id"],
                                "trade": str(t["id"]),
                            }
                        )
                        await self._refresh(row)
            findings += await self._sync_balances(first)
        ok = not [f for f in findings if f.get("kind") != "initial_balance"]
        await self.journal.record_reconciliation(self.rt.instance, ok, findings)
        for f in findings:
            self.mismatches.labels(kind=f["kind"]).inc()
        if not ok:
            await self.rt.alert(
                "SEV-2",
                "reconciliation found mismatches",
                "; ".join(f"{f['kind']}: {f}" for f in findings)[:1500],
            )
        return findings

    async def _match_by_client_id(self, symbol: str, exchange_order_id: str) -> dict | None:
        """A trade of an order the journal has under its client id only (e.g. still UNKNOWN): link and apply it."""
        try:
            o = await self.call_retrying("fetch_order", exchange_order_id, symbol)
        except NotFound:
            return None
        cid = o.get("clientOrderId")
        row = await self.journal.get_order(cid) if cid else None
        if row is not None:
            await self._apply(cid, o)
            self._release(symbol, cid)
            row = await self.journal.get_order(cid)
        return row

    async def _adopt_or_flag(self, symbol: str, o: dict) -> dict:
        cid = o.get("clientOrderId") or ""
        if not is_ours(cid):
            return {"kind": "foreign_order", "symbol": symbol, "order": str(o["id"]), "client_order_id": cid}
        # one of ours the journal lost: adopt it so that it is managed (and cancelled by the kill switch)
        key = f"adopted:{o['id']}"
        await self.journal.insert_order(
            NewOrder(
                client_order_id=cid,
                verdict_id=key,
                signal_id=None,
                symbol=symbol,
                side=str(o["side"]).upper(),
                order_type=str(o.get("type") or "limit").upper(),
                quantity=_d(o.get("amount")),
                price_limit=_d(o.get("price")) or None,
                mode="live",
                purpose="adopted",
            ),
            self.rt.instance,
        )
        await self.journal.mark_sent(cid, "adopted")
        await self._apply(cid, o)
        return {"kind": "adopted_order", "symbol": symbol, "order": str(o["id"]), "client_order_id": cid}

    async def _sync_balances(self, first: bool) -> list[dict]:
        if any(r["status"] == "UNKNOWN" for r in await self.journal.open_orders()):
            # an order whose fills may already be at the exchange but not in the journal: comparing (and
            # adopting) balances now would count those fills twice once the order resolves
            return []
        bal = await self.call_retrying("fetch_balance")
        findings: list[dict] = []
        ledger = self.svc.ledger
        assets = {a for a in (bal.get("total") or {}) if _d(bal["total"][a]) != 0} | set(ledger.balances)
        for asset in sorted(assets):
            free, used = _d((bal.get("free") or {}).get(asset)), _d((bal.get("used") or {}).get(asset))
            mine = ledger.balance(asset)
            if abs(mine.free + mine.locked - free - used) > Decimal("0.00000001"):
                kind = "initial_balance" if first and self.first_balance_sync else "balance"
                findings.append(
                    {
                        "kind": kind,
                        "asset": asset,
                        "journal": str(mine.free + mine.locked),
                        "exchange": str(free + used),
                    }
                )
            mine.free, mine.locked = free, used  # the exchange is the truth for balances
        self.first_balance_sync = False
        await self.journal.write_books(ledger, set(), assets)
        return findings

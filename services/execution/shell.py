"""execution shell: durable verdict consumer, journal-before-send, the paper book or the live broker,
the kill-switch latch and sweep, and the single-writer advisory lock.

Start: read the kill-switch state, take the writer lock (or stand by, never sending), rebuild the books from
Postgres and resolve what a previous run left open, then consume verdicts. Every send happens under one
asyncio lock, right after the last gate check, so the kill switch (which latches first, then takes the lock)
wins every race.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import datetime
from decimal import Decimal
from typing import Any

from libs.common import subjects
from libs.common.conflate import Conflated
from libs.common.contracts import (
    Fill,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    OrderEvent,
    RiskVerdict,
    Tick,
)
from libs.common.errors import ConfigurationError, OperationalError
from libs.common.kill_switch import KillSwitchLatch, alert_unreadable, record_refusal, refresh_latch
from libs.common.markets import Markets, load_markets
from libs.common.service import Runtime
from libs.common.writer_lock import WriterLock
from services.execution.core import (
    client_order_id,
    fill_message_id,
    flatten_order_key,
    may_send,
)
from services.execution.fence import SendFence
from services.execution.journal import (
    DUPLICATE,
    STALE_RISK_EPOCH,
    WRITER_LOCK_NAME,
    FillRow,
    Journal,
    NewOrder,
    PaperRequest,
)
from services.execution.ledger import ZERO, Ledger, split_symbol
from services.execution.paper import (
    FeeSchedule,
    PaperExchange,
    PaperOrder,
    PaperResult,
    SlippageModel,
    exchange_rounder,
    new_paper_order,
    usable_tick,
)

Q8 = Decimal("0.00000001")
PAPER_PERIOD_S = 0.02
OUTBOX_PERIOD_S = 1.0  # the fill outbox: record acks and resend unacknowledged fills this often
OUTBOX_GRACE_S = 2.0  # a fill younger than this is still being published by the path that journaled it


class ExecutionService:
    name = "execution"
    needs_db = True
    needs_exchange_keys = (
        True  # signs live orders: refuses to start live without them (the others never hold them)
    )

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self.ticks: Conflated[Tick] | None = None
        self.lock = asyncio.Lock()  # every send, fill, cancel and sweep happens under it
        self.writer = False
        self.standby_reason = "writer lock not tried yet"
        self.held: dict[str, str] = {}  # symbol -> why it is held (an order with an unknown outcome)
        self.ledger = Ledger()
        self.paper: PaperExchange | None = None
        self.live: Any = None  # services.execution.live.LiveBroker in live mode
        self.verdict_sub: Any = None
        self.writer_lock: WriterLock | None = None
        self.markets: Markets | None = None
        self.sweeper: asyncio.Task | None = None
        self._pending_pub: dict[str, Awaitable[None]] = {}  # client order id -> its SUBMITTED event
        self._unacked: KillSwitchCommand | None = None  # seen while not the writer
        self.fence = SendFence()  # order requests past the last gate check, not finished yet
        self._acked_fills: set[tuple[str, str, str]] = set()  # JetStream acked; published_at not yet written

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.cfg = rt.settings.execution
        self.mode = rt.settings.mode
        self.journal = Journal(rt.pool, self.mode)
        m = rt.metrics
        self.refused = m.counter("verdicts_refused_total", "Verdicts not sent", ["reason"])
        self.orders = m.counter("orders_total", "Order status changes journaled", ["status"])
        self.fills_metric = m.counter("fills_total", "Fills journaled", ["liquidity"])
        self.latency = m.histogram(
            "tick_to_order_seconds",
            "Tick event time to journaled paper fill",
            buckets=m.RESTING_ORDER_BUCKETS,
        )
        self.v2f = m.histogram(
            "verdict_to_fill_seconds", "Verdict event time to journaled fill", buckets=m.RESTING_ORDER_BUCKETS
        )
        self.writer_gauge = m.gauge("writer", "1 while this instance holds the single-writer lock")
        self.open_gauge = m.gauge("open_orders", "Orders open in the journal")
        self.held_gauge = m.gauge("held_symbols", "Symbols held by an order with an unknown outcome")
        self.sweeps = m.counter("kill_switch_sweeps_total", "Cancel-all sweeps run for the kill switch")
        try:
            self.markets = load_markets()
        except Exception as exc:  # paper still runs without filters (prices then round to 8 decimals)
            rt.log.warning("exchange filters not loaded; paper prices round to 8 decimals", error=str(exc))
        # Read the standing kill-switch state before taking any verdict.
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))
        rt.bus.on_reconnect.append(self._on_reconnect)
        # in stream order with each command's sequence, from the standing one on (libs/common/kill_switch.py)
        await rt.bus.follow(
            "KILL_SWITCH",
            subjects.kill_switch(),
            KillSwitchCommand,
            self.on_kill_switch,
            self._on_unreadable_kill_switch,
        )
        # each symbol's newest tick (md.last, conflated by market_data and newest-only here, each payload
        # validated as it arrives): paper fills price against it, and resting paper orders meet it every
        # PAPER_PERIOD_S
        self.ticks = await rt.bus.subscribe_conflated(subjects.ALL_LAST, Tick)
        rt.spawn(self._paper_loop(), "paper-book")
        self.writer_lock = WriterLock(
            rt.settings.database.url.get_secret_value(),
            WRITER_LOCK_NAME,
            "execution",
            holder=rt.instance,
            session_timeout_s=self.cfg.writer_session_timeout_s,
        )
        rt.spawn(self.writer_lock.keep_alive(), "writer-lock-keepalive")
        if await self.writer_lock.try_acquire():
            await self._become_writer()
        else:
            self.standby_reason = "standby: another execution instance holds the writer lock; not sending"
            rt.log.warning(self.standby_reason)
        rt.spawn(self._writer_loop(), "writer-lock")
        rt.spawn(self._outbox_loop(), "fill-outbox")

    async def _on_unreadable_kill_switch(self, reason: str, seq: int) -> None:
        """Something unreadable on the kill-switch subject: the standing state is unknown, so block, and say so."""
        out = self.latch.on_unreadable(reason, seq, self.rt.clock.now())
        if out.outcome == "unreadable":
            self.rt.log.error(
                "unreadable kill-switch command; treating as engaged", reason=reason[:200], seq=seq
            )
            await alert_unreadable(self.rt, self.latch)

    async def _on_reconnect(self) -> None:
        """Re-read the standing kill switch; one engaged while we were away still gets its sweep."""
        await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
        if self.writer and self.latch.engaged and self.latch.known:
            self.rt.spawn(self._sweep_locked(), "kill-switch-sweep-after-reconnect")

    async def _sweep_locked(self) -> None:
        async with self.lock:
            if await self._sweep() != 0:
                await self.rt.alert("SEV-1", "kill switch: open orders remain", "after a NATS reconnect")

    async def _writer_loop(self) -> None:
        """Stand by until the lock is free; as the writer, stop (fail closed) the moment the lock is lost."""
        assert self.writer_lock is not None
        while True:
            await asyncio.sleep(self.cfg.lock_check_interval_s)
            if self.writer:
                self.open_gauge.set(await self.journal.count_open())
                if not await self.writer_lock.still_held():
                    self.writer = False
                    self.writer_gauge.set(0)
                    await self.rt.alert(
                        "SEV-1",
                        "execution lost its writer lock",
                        "the advisory-lock session ended; stopping so that no send is unguarded",
                    )
                    raise OperationalError("execution lost the single-writer advisory lock")
            else:
                try:
                    got = await self.writer_lock.try_acquire()
                except Exception as exc:
                    self.rt.log.warning("writer lock attempt failed", error=str(exc))
                    continue
                if got:
                    await self._become_writer()

    async def _become_writer(self) -> None:
        assert self.writer_lock is not None
        # every journal write from here on is fenced by this epoch (a successor's bump stops them all)
        self.journal.epoch = self.writer_lock.epoch
        self.rt.log.info("writer lock acquired; this instance sends orders", epoch=self.writer_lock.epoch)
        mode = await self.journal.ledger_mode()
        if mode is not None and mode != self.mode:
            raise ConfigurationError(
                "mode",
                f"this database's books belong to {mode} mode; use a separate database for {self.mode} mode",
            )
        await self.journal.set_ledger_mode(self.mode)
        self.ledger, has_balances = await self.journal.load_ledger()
        if self.mode == "paper":
            if not has_balances:
                for asset, amount in self.cfg.starting_balances.items():
                    self.ledger.balance(asset).free = Decimal(amount)
                await self.journal.write_books(self.ledger, set(), set(self.cfg.starting_balances))
            self.paper = PaperExchange(
                self.ledger,
                FeeSchedule(self.cfg.taker_fee_rate, self.cfg.maker_fee_rate, self.cfg.bnb_fee_discount),
                SlippageModel(self.cfg.slippage_bps, self.cfg.slippage_bps_per_10k_usdt),
                self.cfg.limit_participation,
                self._round_fill_price,
            )
            await self._recover_paper()
        else:
            from services.execution.live import LiveBroker

            self.live = LiveBroker(self)
            await self.live.start()
        self.writer = True
        self.writer_gauge.set(1)
        self.standby_reason = ""
        if self.latch.engaged and self.latch.known:
            async with self.lock:  # a standing kill switch: nothing may stay open
                left = await self._sweep()
            cmd, self._unacked = self._unacked, None
            if cmd is not None and cmd.id == self.latch.command_id:
                await self._ack(
                    cmd, left, "zero open orders confirmed" if left == 0 else f"{left} open orders left"
                )
        self.open_gauge.set(await self.journal.count_open())
        # fills a previous run journaled but never got acknowledged: to risk before any new order
        await self._outbox_once(older_than_s=0)
        self.verdict_sub = await self._bind(
            lambda: self.rt.bus.consume(
                "VERDICTS", "execution", subjects.ALL_VERDICTS, RiskVerdict, self.on_verdict, fail_closed=True
            )
        )

    async def _bind(self, subscribe):
        """The durable verdict consumer, once a deposed predecessor has let go of it: one that was paused
        (SIGSTOP) keeps it bound until it resumes and stops, or until NATS drops its silent connection. Nothing
        is sent meanwhile; the lock session is kept alive (and checked) while waiting."""
        assert self.writer_lock is not None
        while True:
            try:
                return await subscribe()
            except Exception as exc:
                if "bound" not in str(exc):
                    raise
            if not await self.writer_lock.still_held():
                raise OperationalError("execution lost the single-writer lock while waiting for its consumer")
            self.standby_reason = "writer: waiting for the verdict consumer a previous writer still holds"
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        if self.writer:
            async with self.lock:  # let an order in flight finish being journaled
                self.writer = False
        if self.live is not None:
            await self.live.close()
        if self.writer_lock is not None:
            await self.writer_lock.release()

    def health(self) -> tuple[str, str]:
        if not self.writer:
            return "ok", self.standby_reason
        if self.latch.blocks:
            return "halted", self.latch.reason or ""
        if self.held:
            return "degraded", "held: " + ", ".join(f"{s} ({r})" for s, r in sorted(self.held.items()))
        return "ok", f"writer ({self.mode})"

    # -- market data ----------------------------------------------------------------------------
    def tick_for(self, symbol: str) -> Tick | None:
        """The newest valid tick of `symbol` (None before the first one)."""
        return self.ticks.latest(subjects.last(symbol)) if self.ticks is not None else None

    async def _paper_loop(self) -> None:
        """Resting paper orders: expire them on time, and match them against each symbol's newest tick."""
        while True:
            await asyncio.sleep(PAPER_PERIOD_S)
            assert self.ticks is not None
            if self.paper is None or not self.writer or not self.paper.book:
                self.ticks.skip()  # nothing rests: no tick to match
                continue
            ticks = self.ticks.drain()
            for tick in ticks:
                self.rt.clock.observe(tick.ts)
            async with self.lock:
                now = self.rt.clock.now()
                for res in self.paper.expire(now):
                    await self._journal_paper(res)
                resting = {o.symbol for o in self.paper.book.values()}
                for tick in ticks:
                    if tick.symbol in resting:
                        for res in self.paper.on_tick(tick, now):
                            await self._journal_paper(res)

    def _round_fill_price(self, symbol: str, price: Decimal, side: str) -> Decimal:
        """Paper fill prices land on the exchange's tick, rounded against us (a BUY up, a SELL down)."""
        return exchange_rounder(self.markets)(symbol, price, side)

    # -- verdicts -------------------------------------------------------------------------------
    def gate(self, verdict: RiskVerdict):
        return may_send(
            verdict,
            kill_switch_blocks=self.latch.blocks,
            now=self.rt.clock.now(),
            is_writer=self.writer,
            symbol_held=self.held.get(verdict.symbol, ""),
            require_risk_epoch=self.mode == "live" or not self.cfg.paper_accepts_unfenced_verdicts,
        )

    async def on_verdict(self, verdict: RiskVerdict, subject: str) -> None:
        if not verdict.approved:
            return
        self.rt.clock.observe(
            verdict.ts
        )  # a data clock (replay) moves on the data; the wall clock ignores it
        if not self.latch.known:
            await self._await_latch_known(verdict)
        gate = self.gate(verdict)
        if not gate.allowed:
            self._refuse(verdict, gate.reason)
            return
        coid = client_order_id(verdict.id)
        limit = verdict.price_limit
        order = NewOrder(
            client_order_id=coid,
            verdict_id=verdict.id,
            signal_id=verdict.signal_id,
            symbol=verdict.symbol,
            side=verdict.side,
            order_type=self.cfg.order_type.upper(),
            quantity=verdict.quantity,
            price_limit=limit,
            mode=self.mode,
            tick_ts=verdict.tick_ts,
            expires_at=verdict.expires_at,
            risk_epoch=verdict.risk_epoch,
            issued_by=verdict.issued_by,
        )
        inserted = await self.journal.insert_order(order, self.rt.instance)
        if inserted == STALE_RISK_EPOCH:
            # decided by a risk writer deposed since (paused across a takeover): never sent (fenced_verdicts)
            self.rt.log.warning(
                "verdict from a deposed risk writer refused",
                verdict_id=verdict.id,
                risk_epoch=verdict.risk_epoch,
                current_risk_epoch=self.journal.last_risk_epoch,
                issued_by=verdict.issued_by,
            )
            self.refused.labels(reason="stale_risk_epoch").inc()
            return
        if inserted == DUPLICATE:
            self.rt.log.info("duplicate verdict ignored", verdict_id=verdict.id, client_order_id=coid)
            self.refused.labels(reason="duplicate").inc()
            return
        journaled_at = self.rt.clock.now()
        self.rt.metrics.count("orders")
        self.orders.labels(status="SUBMITTED").inc()
        # awaited before the order's next event, so they stay in order. Live: published while the exchange
        # answers. Paper: the fill follows within the millisecond, so both go out once it is journaled.
        submitted = self._publish_order(order, "SUBMITTED", ts=journaled_at)
        self._pending_pub[coid] = asyncio.create_task(submitted) if self.paper is None else submitted
        try:
            await self._process(order, verdict)
        finally:
            pending = self._pending_pub.pop(coid, None)
            if pending is not None:
                await pending

    async def _process(self, order: NewOrder, verdict: RiskVerdict) -> None:
        async with self.lock:
            # Immediately before the send: the kill switch wins every race.
            gate = self.gate(verdict)
            if not gate.allowed:
                await self._finish(order, "REJECTED", gate.reason)
                self._refuse(verdict, gate.reason)
                return
            if self.paper is not None:
                await self._send_paper(order, verdict)
            else:
                await self.live.place(order, lambda: self.gate(verdict))

    async def _await_latch_known(self, verdict: RiskVerdict) -> None:
        """The kill-switch state is unknown (e.g. just after a NATS reconnect): 'unknown' is not a 'no'
        from the operator, so read it again, up to the verdict's expiry, before deciding. Nothing is sent
        meanwhile; a verdict that expires waiting is refused as expired."""
        while not self.latch.known and self.rt.clock.now() < verdict.expires_at:
            await refresh_latch(self.rt.bus, self.latch, self.rt.log)
            if not self.latch.known:
                await asyncio.sleep(0.2)

    def _refuse(self, verdict: RiskVerdict, reason: str) -> None:
        self.refused.labels(reason=reason).inc()
        self.rt.log.info("verdict not sent", verdict_id=verdict.id, reason=reason)

    # -- the paper broker -----------------------------------------------------------------------
    async def _send_paper(self, order: NewOrder, verdict: RiskVerdict | None) -> PaperResult:
        """Send one journaled order to the paper book. With a verdict, the caller has just checked its gate
        (no await since), so the request is in flight (the fence) until the book has it."""
        assert self.paper is not None
        with self.fence.sending() if verdict is not None else contextlib.nullcontext():
            if self.cfg.paper_latency_ms:
                await asyncio.sleep(self.cfg.paper_latency_ms / 1000)
            now = self.rt.clock.now()  # the instant the paper exchange receives the request
            tick = usable_tick(self.tick_for(order.symbol), now, self.settings.market_data.stale_after_s)
            po = new_paper_order(
                order.client_order_id,
                order.symbol,
                order.side,
                order.order_type,
                order.quantity,
                order.price_limit,
                now,
                self.cfg.limit_order_ttl_s,
            )
            res = self.paper.submit(po, tick, now)
        await self._journal_paper(
            res,
            verdict,
            request=PaperRequest(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                received_at=now,
                instance=self.rt.instance,
            ),
        )
        return res

    async def _journal_paper(
        self, res: PaperResult, verdict: RiskVerdict | None = None, request: PaperRequest | None = None
    ) -> None:
        o = res.order
        base, quote = split_symbol(o.symbol)
        now = self.rt.clock.now()
        rows = [
            FillRow(
                exchange="paper",
                trade_id=t.trade_id,
                client_order_id=t.client_order_id,
                symbol=t.symbol,
                side=t.side,
                quantity=t.quantity,
                price=t.price,
                fee=t.fee,
                fee_asset=t.fee_asset,
                ts=now,
                is_maker=t.is_maker,
                realized_pnl_usdt=t.accounting.realized_pnl_usdt,
                fee_usdt=t.accounting.fee_quote,
            )
            for t in res.trades
        ]
        await self.journal.commit_order_update(
            o.client_order_id,
            status=res.status,
            reason=res.reason or None,
            filled=o.filled,
            average_price=o.average_price,
            fee_usdt_add=sum((r.fee_usdt for r in rows), ZERO),
            locked=o.locked,
            trades=o.trades,
            fills=rows,
            ledger=self.ledger,
            symbol=o.symbol,
            assets={base, quote},
            resting_expires_at=o.expires_at if res.status == "ACCEPTED" else None,
            request=request,
        )
        await self._after_update(
            o.client_order_id, res.status, res.reason, rows, verdict, row=self.journal.last_row
        )

    async def _after_update(
        self,
        coid: str,
        status: str,
        reason: str,
        fills: list[FillRow],
        verdict: RiskVerdict | None = None,
        row: dict[str, Any] | None = None,
    ) -> None:
        """Count, measure and publish a journaled change (the journal is already committed)."""
        journaled_at = (
            self.rt.clock.now()
        )  # the event's time: when the change became durable, not when it is published
        self.orders.labels(status=status).inc()
        for f in fills:
            self.rt.metrics.count("fills")
            self.fills_metric.labels(liquidity="maker" if f.is_maker else "taker").inc()
        if row is None or row["client_order_id"] != coid:
            row = await self.journal.get_order(coid)
        pending = self._pending_pub.pop(coid, None)
        if pending is not None:
            await pending
        if fills and verdict is not None:
            self.v2f.observe((journaled_at - verdict.ts).total_seconds())
            if verdict.tick_ts is not None:
                self.latency.observe((journaled_at - verdict.tick_ts).total_seconds())
        done = await asyncio.gather(
            self._publish_row(row, journaled_at),
            *(self._publish_fill(f) for f in fills),
            return_exceptions=True,
        )
        if isinstance(done[0], BaseException):
            raise done[0]

    async def _finish(self, order: NewOrder, status: str, reason: str) -> None:
        await self.journal.set_status(order.client_order_id, status, reason=reason)
        await self._after_update(order.client_order_id, status, reason, [])

    async def _recover_paper(self) -> None:
        """Rebuild the paper book from the journal; an order interrupted before its match never happened."""
        assert self.paper is not None
        for row in await self.journal.open_orders():
            if row["status"] in ("ACCEPTED", "PARTIALLY_FILLED") and row["order_type"] == "LIMIT":
                filled = Decimal(row["filled_quantity"])
                avg = Decimal(row["average_price"]) if row["average_price"] is not None else ZERO
                self.paper.restore(
                    PaperOrder(
                        client_order_id=row["client_order_id"],
                        symbol=row["symbol"],
                        side=row["side"],
                        order_type="LIMIT",
                        quantity=Decimal(row["quantity"]),
                        limit_price=Decimal(row["price_limit"]),
                        created_at=row["created_at"],
                        expires_at=row["resting_expires_at"],
                        filled=filled,
                        notional=filled * avg,
                        trades=int(row["trades"]),
                        locked=Decimal(row["locked"]),
                        status=row["status"],
                    )
                )
                self.rt.log.info("resting paper order restored", client_order_id=row["client_order_id"])
            else:
                await self.journal.set_status(
                    row["client_order_id"],
                    "REJECTED",
                    reason="interrupted before the paper match (restart); not sent",
                )
                self.rt.log.warning(
                    "paper order interrupted by a restart; marked not sent",
                    client_order_id=row["client_order_id"],
                )
                await self._publish_row(await self.journal.get_order(row["client_order_id"]))

    # -- the kill switch ------------------------------------------------------------------------
    async def on_kill_switch(self, cmd: KillSwitchCommand, seq: int) -> None:
        out = self.latch.on_command(cmd, seq)  # first, before any await: no send may start after this line
        if out.outcome == "refused":  # a release without operator authority: nothing changed
            await record_refusal(self.rt, cmd, out.reason)
            if self.writer:
                await self._ack(cmd, await self.journal.count_open(), out.reason, engaged=self.latch.blocks)
            return
        if not out.applied:  # older than what the latch holds, or the standing command again
            return
        if self.writer and cmd.action == "engage":
            # Requests that passed the gate before the line above may still be in ccxt's rate limiter, the
            # HTTP connect or the paper latency: wait for them, so that once the notice is out no order
            # request can reach the exchange. Nothing in flight (the usual case): no wait at all.
            in_flight = await self.fence.drained()
            # then say so: from here no order is sent; the ack below confirms the cancel sweep
            try:
                await self.rt.bus.publish(
                    subjects.kill_switch_latched(self.name),
                    KillSwitchAcknowledged(
                        ts=self.rt.clock.now(),
                        command_id=cmd.id,
                        service=self.name,
                        engaged=True,
                        detail="latched: no order is sent from now on; "
                        f"{in_flight} order request(s) already past the gate finished first; "
                        "cancel sweep under way",
                    ),
                )
            except Exception as exc:  # a lost notice must never stop the sweep
                self.rt.log.warning("kill-switch latch notice not sent", error=str(exc))
        self.rt.log.warning("kill switch latched", action=cmd.action, reason=cmd.reason, writer=self.writer)
        if not self.writer:
            # a standby never sends, so it has nothing to cancel; the writer acknowledges. Should this
            # instance become the writer, it sweeps and acknowledges then.
            self._unacked = cmd
            return
        if cmd.action == "release":
            await self._ack(cmd, await self.journal.count_open(), "released")
            return
        details: list[str] = []
        async with self.lock:
            left = await self._sweep()
            if left == 0 and (cmd.flatten or self.cfg.flatten_on_kill_switch):
                details.append(await self._flatten(cmd))
                left = await self._sweep()
        # only a live order can have an unknown outcome (the paper book always knows)
        unknown = (
            []
            if self.live is None
            else [r["client_order_id"] for r in await self.journal.open_orders() if r["status"] == "UNKNOWN"]
        )
        if unknown:
            details.append(
                f"{len(unknown)} orders with an unknown outcome still being resolved (cancelled if they "
                "surface)"
            )
        if left == 0:
            details.insert(0, "zero open orders confirmed")
        else:
            details.insert(0, f"{left} open orders could not be confirmed cancelled; still sweeping")
            await self.rt.alert("SEV-1", "kill switch: open orders remain", details[0])
            if self.sweeper is None or self.sweeper.done():
                self.sweeper = self.rt.spawn(self._keep_sweeping(), "kill-switch-sweeper")
        await self._ack(cmd, left, "; ".join(d for d in details if d))

    async def _ack(
        self, cmd: KillSwitchCommand, open_orders: int, detail: str, engaged: bool | None = None
    ) -> None:
        ack = KillSwitchAcknowledged(
            ts=self.rt.clock.now(),
            command_id=cmd.id,
            service=self.name,
            engaged=cmd.action == "engage" if engaged is None else engaged,
            open_orders=open_orders,
            detail=detail[:1000],
        )
        await self.rt.bus.publish(subjects.kill_switch_ack(self.name), ack)

    async def _sweep(self) -> int:
        """Cancel every open order, retrying until the exchange (or the paper book) shows none. Returns what is left."""
        left = -1
        for attempt in range(self.cfg.cancel_max_sweeps):
            self.sweeps.inc()
            left = await (self._sweep_paper() if self.paper is not None else self.live.sweep())
            if left == 0:
                break
            self.rt.log.warning("open orders remain after a cancel sweep", left=left, attempt=attempt + 1)
            await asyncio.sleep(self.cfg.cancel_retry_interval_s)
        self.open_gauge.set(max(left, 0))
        return left

    async def _keep_sweeping(self) -> None:
        while self.latch.engaged:
            async with self.lock:
                if await self._sweep() == 0:
                    await self.rt.alert("INFO", "kill switch: zero open orders confirmed", "after retries")
                    return
            await asyncio.sleep(self.cfg.cancel_retry_interval_s)

    async def _sweep_paper(self) -> int:
        """Cancel the paper book and every journal order left open; the journal then confirms zero open.

        One query when nothing was open (the usual case: the engage is acknowledged fastest then); a
        second count confirms the result whenever something had to be cancelled."""
        assert self.paper is not None
        changed = False
        for res in self.paper.cancel_all("kill_switch"):
            await self._journal_paper(res)
            changed = True
        rows = await self.journal.open_orders()
        for row in rows:
            # The paper book is the exchange: an order not in it is not open anywhere.
            if row["client_order_id"] not in self.paper.book:
                await self.journal.set_status(row["client_order_id"], "CANCELLED", reason="kill_switch")
                await self._publish_row(await self.journal.get_order(row["client_order_id"]))
                changed = True
        if not changed:
            return len(self.paper.book) + len(rows)
        return len(self.paper.book) + await self.journal.count_open()

    async def _flatten(self, cmd: KillSwitchCommand) -> str:
        """Sell every long position at market (spot: nothing to buy back). Journaled like any order."""
        done: list[str] = []
        for symbol, pos in sorted(self.ledger.positions.items()):
            base, _ = split_symbol(symbol)
            qty = min(pos.quantity, self.ledger.balance(base).free)
            if self.markets is not None and symbol in self.markets:
                qty = self.markets.round_quantity(symbol, qty, order_type="MARKET")
            if qty <= 0:
                continue
            key = flatten_order_key(cmd.id, symbol)
            order = NewOrder(
                client_order_id=client_order_id(key),
                verdict_id=key,
                signal_id=None,
                symbol=symbol,
                side="SELL",
                order_type="MARKET",
                quantity=qty,
                price_limit=None,
                mode=self.mode,
                purpose="flatten",
            )
            if await self.journal.insert_order(order, self.rt.instance) == DUPLICATE:
                continue  # this command already flattened this symbol
            self.rt.metrics.count("orders")
            await self._publish_order(order, "SUBMITTED")
            if self.paper is not None:
                res = await self._send_paper(order, None)
                done.append(
                    f"{symbol} {res.status.lower()} {qty}" + (f" ({res.reason})" if res.reason else "")
                )
            else:
                status = await self.live.place(order, None)
                done.append(f"{symbol} {str(status).lower()} {qty}")
        return "flattened: " + (", ".join(done) if done else "nothing held")

    # -- publishing -----------------------------------------------------------------------------
    async def _publish_order(
        self, o: NewOrder, status: str, reason: str = "", ts: datetime | None = None
    ) -> None:
        await self.rt.bus.publish(
            subjects.order(o.symbol),
            OrderEvent(
                ts=ts or self.rt.clock.now(),
                client_order_id=o.client_order_id,
                verdict_id=o.verdict_id,
                symbol=o.symbol,
                side=o.side,
                order_type=o.order_type,
                status=status,
                quantity=o.quantity,
                price=o.price_limit,
                mode=self.mode,
                reason=reason,
            ),
        )

    async def _publish_fill(self, f: FillRow | dict[str, Any]) -> bool:
        """Publish one journaled fill (the outbox: until JetStream acknowledges it, it stays unpublished in the
        journal and `_outbox_loop` sends it again). Never raises: the fill is durable, the outbox has it."""
        g = f.get if isinstance(f, dict) else lambda k: getattr(f, k)
        key = (g("exchange"), g("symbol"), g("trade_id"))
        try:
            await self.rt.bus.publish(
                subjects.fill(key[1]),
                Fill(
                    id=fill_message_id(*key),
                    ts=g("ts"),
                    client_order_id=g("client_order_id"),
                    exchange=key[0],
                    trade_id=key[2],
                    symbol=key[1],
                    side=g("side"),
                    quantity=g("quantity"),
                    price=g("price"),
                    fee=g("fee"),
                    fee_asset=g("fee_asset"),
                    is_maker=g("is_maker"),
                    realized_pnl_usdt=g("realized_pnl_usdt"),
                ),
            )
        except Exception as exc:
            self.rt.log.warning(
                "fill publish failed; the outbox sends it again",
                trade_id=key[2],
                symbol=key[1],
                error=str(exc)[:200],
            )
            return False
        self._acked_fills.add(key)
        return True

    async def _outbox_loop(self) -> None:
        """As the writer: record JetStream's acks of fills, and publish again every journaled fill it has not
        acknowledged (a publish that failed after the commit, or a process killed in between)."""
        while True:
            await asyncio.sleep(OUTBOX_PERIOD_S)
            if not self.writer:
                continue
            try:
                await self._outbox_once()
            except Exception as exc:  # the database or the bus is away: the fills stay in the outbox
                self.rt.log.warning("fill outbox pass failed", error=str(exc)[:200])

    async def _outbox_once(self, older_than_s: float = OUTBOX_GRACE_S) -> int:
        await self._record_acked_fills()
        rows = await self.journal.unpublished_fills(older_than_s)
        sent = [r for r in rows if await self._publish_fill(r)]
        if rows:
            self.rt.log.warning(
                "fill outbox: journaled fills published again",
                published=len(sent),
                failed=len(rows) - len(sent),
            )
        await self._record_acked_fills()
        return len(sent)

    async def _record_acked_fills(self) -> None:
        """Write `published_at` for the fills JetStream acknowledged; kept for the next pass if that fails."""
        acked, self._acked_fills = self._acked_fills, set()
        try:
            await self.journal.mark_published(sorted(acked))
        except Exception:
            self._acked_fills |= acked
            raise

    async def _publish_row(self, row: dict[str, Any] | None, ts: datetime | None = None) -> None:
        if row is None:
            return
        await self.rt.bus.publish(
            subjects.order(row["symbol"]),
            OrderEvent(
                ts=ts or self.rt.clock.now(),
                client_order_id=row["client_order_id"],
                verdict_id=row["verdict_id"],
                symbol=row["symbol"],
                side=row["side"],
                order_type=row["order_type"],
                status=row["status"],
                quantity=row["quantity"],
                price=row["price_limit"],
                filled_quantity=row["filled_quantity"],
                average_price=row["average_price"],
                exchange_order_id=row["exchange_order_id"],
                mode=row["mode"],
                reason=row["reason"][:500],
            ),
        )

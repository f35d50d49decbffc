"""execution shell: wiring. The durable verdict consumer, journal-before-send, a broker behind the port
(`broker.py`: `paper_broker.py` or `live.py`), the kill switch (`kill.py`), the publisher and fill outbox
(`publish.py`), and the single-writer advisory lock.

Start: read the kill-switch state, take the writer lock (or stand by, never sending), rebuild the books from
Postgres and let the broker resolve what a previous run left open, then consume verdicts. Every send happens
under one asyncio lock, right after the last gate check, so the kill switch (which latches first, then takes
the lock) wins every race.
"""

from __future__ import annotations

import asyncio

from libs.common import subjects
from libs.common.conflate import Conflated
from libs.common.contracts import RiskVerdict, Tick
from libs.common.kill_switch import KillSwitchLatch
from libs.common.markets import Markets, load_markets
from libs.common.service import Runtime
from libs.common.writer_lock import WriterLock
from services.execution.broker import Broker, BrokerPorts, Holds
from services.execution.core import Gate, may_send, order_for, requires_risk_epoch
from services.execution.fence import SendFence
from services.execution.journal import DUPLICATE, STALE_RISK_EPOCH, WRITER_LOCK_NAME, Journal, NewOrder
from services.execution.kill import KillSwitch
from services.execution.publish import Meters, Publisher
from services.execution.rules import WRITER_LOCK_LOST
from services.execution.writer import bind_when_free, hold_writer_seat

WAITING_FOR_CONSUMER = "writer: waiting for the verdict consumer a previous writer still holds"


class ExecutionService:
    name = "execution"
    needs_db = True
    # signs live orders: refuses to start live without them (the others never hold them)
    needs_exchange_keys = True

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self.ticks: Conflated[Tick] | None = None
        self.lock = asyncio.Lock()  # every send, fill, cancel and sweep happens under it
        self.writer = False
        self.standby_reason = "writer lock not tried yet"
        self.broker: Broker | None = None  # paper or live, once this instance is the writer
        self.writer_lock: WriterLock | None = None
        self.markets: Markets | None = None
        self.fence = SendFence()  # order requests past the last gate check, not finished yet
        self._taking_work = False  # the verdict consumer bound: what `writer_epoch` reports in the heartbeat

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt, self.cfg, self.mode = rt, rt.settings.execution, rt.settings.mode
        self.journal = Journal(rt.pool, self.mode)
        m = rt.metrics
        self.refused = m.counter("verdicts_refused_total", "Verdicts not sent", ["reason"])
        meters = Meters(
            count=m.count,
            orders=m.counter("orders_total", "Order status changes journaled", ["status"]),
            fills=m.counter("fills_total", "Fills journaled", ["liquidity"]),
            tick_to_order=m.histogram(
                "tick_to_order_seconds",
                "Tick event time to journaled paper fill",
                buckets=m.RESTING_ORDER_BUCKETS,
            ),
            verdict_to_fill=m.histogram(
                "verdict_to_fill_seconds",
                "Verdict event time to journaled fill",
                buckets=m.RESTING_ORDER_BUCKETS,
            ),
        )
        self.writer_gauge = m.gauge("writer", "1 while this instance holds the single-writer lock")
        self.open_gauge = m.gauge("open_orders", "Orders open in the journal")
        self.holds = Holds(m.gauge("held_symbols", "Symbols held by an order with an unknown outcome"))
        self.publisher = Publisher(rt.bus, rt.clock, rt.log, self.journal, self.mode, meters)
        self.kill = KillSwitch(
            rt, self.latch, self.lock, self.fence, self.journal, self.publisher, self.open_gauge, lambda: self.writer
        )  # fmt: skip
        try:
            self.markets = load_markets()
        except Exception as exc:  # paper still runs without filters (prices then round to 8 decimals)
            rt.log.warning("exchange filters not loaded; paper prices round to 8 decimals", error=str(exc))
        await self.kill.attach()  # the standing kill-switch state, read before any verdict is taken
        # each symbol's newest tick (md.last, conflated by market_data, validated as it arrives): paper fills
        # price against it, and resting paper orders meet it
        self.ticks = await rt.bus.subscribe_conflated(subjects.ALL_LAST, Tick)
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
        seat = hold_writer_seat(
            self.writer_lock, self.cfg.lock_check_interval_s, lambda: self.writer, self._count_open,
            self._lost_writer_lock, self._become_writer, rt.log,
        )  # fmt: skip
        rt.spawn(seat, "writer-lock")
        rt.spawn(self.publisher.outbox_loop(lambda: self.writer), "fill-outbox")

    async def _lost_writer_lock(self) -> None:
        self.writer, self._taking_work = False, False
        self.writer_gauge.set(0)
        detail = "the advisory-lock session ended; stopping so that no send is unguarded"
        await self.rt.alert(*WRITER_LOCK_LOST, detail)

    async def _count_open(self) -> None:
        self.open_gauge.set(await self.journal.count_open())

    async def _become_writer(self) -> None:
        assert self.writer_lock is not None and self.ticks is not None
        # every journal write from here on is fenced by this epoch (a successor's bump stops them all)
        self.journal.epoch = self.writer_lock.epoch
        self.rt.log.info("writer lock acquired; this instance sends orders", epoch=self.writer_lock.epoch)
        starting = self.cfg.starting_balances if self.mode == "paper" else None
        ledger = await self.journal.open_books(starting)  # refuses a database of the other mode
        rt = self.rt
        ports = BrokerPorts(
            self.journal, ledger, self.cfg, rt.clock, rt.log, rt.instance, self.lock, self.fence, self.publisher,
            self.holds, rt.alert, rt.spawn, rt.metrics, lambda: self.latch.blocks, lambda: self.writer,
            self.tick_for, list(rt.settings.symbols), self.markets,
        )  # fmt: skip
        if self.mode == "paper":
            from services.execution.paper_broker import PaperBroker

            self.broker = PaperBroker(ports, self.ticks, rt.settings.market_data.stale_after_s)
        else:
            from services.execution.live import LiveBroker

            self.broker = LiveBroker(ports, rt.settings.live)
        await self.broker.start()  # what a previous run left open is resolved before any new order
        self.writer = True
        self.writer_gauge.set(1)
        self.standby_reason = ""
        await self.kill.armed(self.broker, ledger)
        self.open_gauge.set(await self.journal.count_open())
        # fills a previous run journaled but never got acknowledged: to risk before any new order
        await self.publisher.outbox_once(older_than_s=0)
        self.verdict_sub = await bind_when_free(
            lambda: rt.bus.consume(
                "VERDICTS", "execution", subjects.ALL_VERDICTS, RiskVerdict, self.on_verdict, fail_closed=True
            ),
            self.writer_lock,
            lambda: setattr(self, "standby_reason", WAITING_FOR_CONSUMER),
        )
        self._taking_work = True

    async def stop(self) -> None:
        if self.writer:
            async with self.lock:  # let an order in flight finish being journaled
                self.writer = False
        if self.broker is not None:
            await self.broker.close()
        if self.writer_lock is not None:
            await self.writer_lock.release()

    def writer_epoch(self) -> int | None:
        """The heartbeat's readiness fact: the epoch this instance sends under, once its verdict consumer is bound."""
        if not (self.writer and self._taking_work) or self.writer_lock is None:
            return None
        return self.writer_lock.epoch

    def health(self) -> tuple[str, str]:
        if not self.writer:
            return "ok", self.standby_reason
        if self.latch.blocks:
            return "halted", self.latch.reason or ""
        if self.holds.held:
            return "degraded", "held: " + ", ".join(f"{s} ({r})" for s, r in sorted(self.holds.held.items()))
        return "ok", f"writer ({self.mode})"

    def tick_for(self, symbol: str) -> Tick | None:
        """The newest valid tick of `symbol` (None before the first one)."""
        return self.ticks.latest(subjects.last(symbol)) if self.ticks is not None else None

    # -- verdicts -------------------------------------------------------------------------------
    def gate(self, verdict: RiskVerdict) -> Gate:
        return may_send(
            verdict,
            kill_switch_blocks=self.latch.blocks,
            now=self.rt.clock.now(),
            is_writer=self.writer,
            symbol_held=self.holds.why(verdict.symbol),
            require_risk_epoch=requires_risk_epoch(self.mode, self.cfg.paper_accepts_unfenced_verdicts),
        )

    async def on_verdict(self, verdict: RiskVerdict, subject: str) -> None:
        if not verdict.approved:
            return
        # a data clock (replay) moves on the data; the wall clock ignores it
        self.rt.clock.observe(verdict.ts)
        if not self.latch.known:
            await self.kill.await_known(verdict.expires_at)
        gate = self.gate(verdict)
        if not gate.allowed:
            return self._refuse(verdict, gate.reason)
        order = order_for(verdict, order_type=self.cfg.order_type, mode=self.mode)
        coid = order.client_order_id
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
        self.publisher.m.orders.labels(status="SUBMITTED").inc()
        # awaited before the order's next event, so they stay in order. Live: published while the exchange
        # answers. Paper: the fill follows within the millisecond, so both go out once it is journaled.
        submitted = self.publisher.order(order, "SUBMITTED", ts=journaled_at)
        pending = self.publisher.pending
        pending[coid] = submitted if self.mode == "paper" else asyncio.create_task(submitted)
        try:
            await self._process(order, verdict)
        finally:
            left = pending.pop(coid, None)
            if left is not None:
                await left

    async def _process(self, order: NewOrder, verdict: RiskVerdict) -> None:
        async with self.lock:
            # Immediately before the send: the kill switch wins every race.
            gate = self.gate(verdict)
            if not gate.allowed or self.broker is None:
                await self.publisher.finish(order, "REJECTED", gate.reason or "not_writer")
                return self._refuse(verdict, gate.reason or "not_writer")
            await self.broker.place(order, lambda: self.gate(verdict), verdict)

    def _refuse(self, verdict: RiskVerdict, reason: str) -> None:
        self.refused.labels(reason=reason).inc()
        self.rt.log.info("verdict not sent", verdict_id=verdict.id, reason=reason)

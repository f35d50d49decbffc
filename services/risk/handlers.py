"""risk's inputs (wiring): signals in, verdicts out; fills, orders, ticks, heartbeats, drift, market status,
operator controls and the kill switch in. What to do is the core's (`core.py`, `control.py`); the writes are
the writer seat's (`writer.py`), the reconciliations and the prices `upkeep.py`'s: both given, not inherited."""

from __future__ import annotations

import asyncio

from libs.common import subjects
from libs.common.contracts import (
    DriftStatus,
    Fill,
    Heartbeat,
    KillSwitchCommand,
    MarketStatus,
    OrderEvent,
    Signal,
    TradingControlCommand,
)
from libs.common.kill_switch import alert_unreadable, record_refusal, refresh_latch
from services.risk import alerts, control
from services.risk.checkpoint import Checkpoint
from services.risk.ports import RiskPorts
from services.risk.upkeep import Upkeep
from services.risk.writer import WriterSeat

TICKS_PERIOD_S = 0.1  # volatility samples once a second and staleness counts in seconds
# The lock is confirmed about every second (the writer's check, the keep-alive). Older than this, the process
# has not run for a while, and it asks the server before deciding a signal (no round trip otherwise).
LOCK_CONFIRM_MAX_S = 2.5


class Handlers:
    def __init__(self, p: RiskPorts, seat: WriterSeat, upkeep: Upkeep, name: str) -> None:
        self.p, self.seat, self.upkeep, self.name = p, seat, upkeep, name
        self.rt, self.engine, self.latch = p.rt, p.engine, p.latch

    async def read_drift(self) -> None:
        try:
            st = await self.rt.bus.last_value("SIGNAL_DRIFT", subjects.drift(), DriftStatus)
        except Exception as exc:
            self.rt.log.warning("drift status unreadable; keeping persisted drift breakers", error=str(exc))
            return
        if st is not None:
            await self.on_drift(st, subjects.drift())
        else:
            self.engine.on_drift(None, False, "")

    # -- bus connection and the kill switch -----------------------------------------------------
    async def on_bus_lost(self) -> None:
        self.latch.set_unknown("lost NATS connection")
        self.engine.kill_known = False

    async def on_unreadable_kill_switch(self, reason: str, seq: int) -> None:
        out = self.latch.on_unreadable(reason, seq, self.rt.clock.now())
        if out.outcome != "unreadable":
            return  # older than the command held
        self.engine.kill_known = False
        self.rt.log.error("unreadable kill-switch command; treating as engaged", reason=reason[:200], seq=seq)
        await alert_unreadable(self.rt, self.latch)

    async def on_bus_back(self) -> None:
        await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
        await self.seat.handle(
            self.engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
        )

    async def on_kill_switch(self, cmd: KillSwitchCommand, seq: int) -> None:
        engine = self.engine
        out = self.latch.on_command(cmd, seq)
        if out.outcome == "refused":  # a release without operator authority: nothing changed
            await record_refusal(self.rt, cmd, out.reason)
            await self.upkeep.ack(cmd, detail=out.reason, engaged=self.latch.blocks)
            return
        if out.outcome == "confirmed":
            engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
        if not out.applied:  # older than what the latch holds, or the standing command again
            return
        now = self.rt.clock.now()
        if cmd.action == "engage":
            events, refused = engine.set_kill_switch(True, True, now), ""
        else:
            events = engine.set_kill_switch(False, True, now)
            more, refused = engine.release(now)
            events += more
        await self.p.store.audit(cmd)
        self.rt.log.warning("kill switch", action=cmd.action, reason=cmd.reason, actor=cmd.actor)
        await self.upkeep.ack(cmd, detail=f"trading stays HALTED: {refused}" if refused else "")
        await self.seat.handle(events)
        if refused:
            await self.seat.alert(alerts.release_refused(refused))

    # -- market inputs --------------------------------------------------------------------------
    async def apply_ticks_loop(self) -> None:
        while True:
            await asyncio.sleep(TICKS_PERIOD_S)
            self.upkeep.apply_ticks()

    async def on_market_status(self, st: MarketStatus, subject: str) -> None:
        self.engine.on_market_status(st.symbol, st.status == "stale", st.reason)

    async def on_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        if hb.service != self.name:
            self.engine.on_heartbeat(hb.service, self.rt.clock.now())

    async def on_drift(self, st: DriftStatus, subject: str) -> None:
        self.engine.on_drift(st.symbol, st.detected, st.reason)
        await self.seat.handle(self.engine.evaluate(self.rt.clock.now()))

    # -- fills and orders -----------------------------------------------------------------------
    async def on_fill(self, fill: Fill, subject: str) -> None:
        """Apply a fill once: ledger row and new account state in one transaction, memory after commit."""
        engine, rt = self.engine, self.rt
        async with self.seat.db_lock:
            if await self.p.store.fill_applied(fill):
                rt.log.info("fill already applied", trade_id=fill.trade_id)
                return
            saved = Checkpoint.take(engine)
            now = rt.clock.now()
            outcome, events = engine.on_fill(fill, now)
            snap = engine.snapshot(now)
            try:
                await self.p.store.write_fill(
                    fill, outcome, snap
                )  # a fenced writer's rolls back (redelivered)
            except Exception:
                saved.restore(engine)
                self.seat.db_failed("fill not applied: database write failed")
                raise  # not acked: JetStream redelivers it
            self.seat.db_succeeded()
        self.p.m.fills.labels(side=fill.side).inc()
        rt.log.info(
            "fill applied",
            symbol=fill.symbol,
            side=fill.side,
            qty=str(fill.quantity),
            realized=str(outcome.realized_own),
            losing=outcome.losing_trade,
        )
        for a in alerts.fill_alerts(fill, outcome, self.p.cfg.pnl_divergence_usdt):
            await self.seat.alert(a)
        await self.seat.handle(events)
        await self.seat.publish_account(snap)

    async def on_order(self, ev: OrderEvent, subject: str) -> None:
        """Execution's order events: a reservation follows its order until the order is terminal."""
        self.engine.on_order(ev.verdict_id, ev.client_order_id, ev.status, ev.filled_quantity, ev.quantity)

    # -- signals and operator controls ----------------------------------------------------------
    async def on_signal(self, sig: Signal, subject: str) -> None:
        if sig.side == "HOLD":
            return
        engine, rt = self.engine, self.rt
        if self.seat.seated and self.seat.lock.unconfirmed_for() > LOCK_CONFIRM_MAX_S:
            # this process did not run for a while (paused, starved): a successor may hold the lock by now
            if not await self.seat.lock.still_held():
                await self.seat.lose("the writer lock's session is gone (found after a stall)")
        engine.db_ok = self.p.db.fresh(rt.clock.monotonic())
        tick = self.upkeep.take_tick(sig.symbol)  # the freshest price of this symbol
        rt.clock.observe(sig.ts)
        if tick is not None:
            rt.clock.observe(tick.ts)
            engine.on_tick(tick.symbol, tick.last, tick.ts, rt.clock.now())
        with self.p.m.decision.time():
            decision = engine.decide(sig, rt.clock.now())
        verdict = decision.verdict
        # No lock round trip here: the verdict carries this writer's epoch (risk_epoch), and execution's journal
        # insert of its order refuses an epoch a successor has replaced, in the same statement.
        await rt.bus.publish(subjects.verdict(sig.symbol), verdict)
        self.p.m.verdict(sig, verdict)
        if verdict.approved:
            rt.log.info(
                "verdict approved",
                symbol=sig.symbol,
                side=sig.side,
                qty=str(verdict.quantity),
                limit=str(verdict.price_limit),
                verdict_id=verdict.id,
            )
        elif alerts.is_breaker_refusal(verdict.reasons):  # the runbook's symptom line
            rt.log.info(
                f"Skip {sig.side} {sig.symbol}: risk budget/circuit breaker active",
                reasons=verdict.reasons,
                trading_state=verdict.trading_state,
            )
        else:
            rt.log.info("verdict refused", symbol=sig.symbol, side=sig.side, reasons=verdict.reasons)
        if decision.events:
            await self.seat.handle(decision.events)

    async def on_trading_control(self, cmd: TradingControlCommand, subject: str) -> None:
        """Operator pause / resume / exit: `services/risk/control.py` decides; an exit's verdict goes out like any."""
        engine, rt = self.engine, self.rt
        engine.db_ok = self.p.db.fresh(rt.clock.monotonic())
        tick = self.upkeep.take_tick(cmd.symbol) if cmd.symbol else None
        if tick is not None:
            engine.on_tick(tick.symbol, tick.last, tick.ts, rt.clock.now())
        out = control.apply_control(engine, cmd, rt.clock.now())
        if out.verdict is not None:
            await rt.bus.publish(subjects.verdict(out.verdict.symbol), out.verdict)
        rt.log.warning(
            "operator control",
            action=cmd.action,
            symbol=cmd.symbol,
            actor=cmd.actor,
            reason=cmd.reason,
            accepted=out.accepted,
            detail=out.detail,
        )
        await self.seat.handle(out.events)
        await self.seat.persist(force=True)
        result = control.control_result(self.name, cmd, out, engine.sm.state, rt.clock.now())
        await rt.bus.publish(subjects.trading_control_result(self.name), result)

"""risk's inputs (wiring): signals in, verdicts out; fills, orders, ticks, heartbeats, drift, market status and
the kill switch in; events persisted (`store.py`), published, measured and alerted (`alerts.py`). What to do
is the core's (`core.py`, `control.py`) and the pure rules' (`reconcile.py`, `health.py`)."""

from __future__ import annotations

import asyncio
from typing import cast

from libs.common import subjects
from libs.common.conflate import Conflated
from libs.common.contracts import (
    AccountState,
    BreakerTripped,
    DriftStatus,
    Fill,
    Heartbeat,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    MarketStatus,
    OrderEvent,
    Signal,
    Tick,
    TradingControlCommand,
    TradingState,
    TradingStateChanged,
)
from libs.common.kill_switch import (
    KillSwitchLatch,
    alert_unreadable,
    read_standing,
    record_refusal,
    refresh_latch,
)
from libs.common.service import Runtime
from libs.common.settings import RiskSettings
from libs.common.writer_lock import WriterLock
from services.risk import alerts, control, reconcile
from services.risk.checkpoint import Checkpoint
from services.risk.core import Event, RiskEngine
from services.risk.health import DbHealth
from services.risk.metrics import RiskMetrics
from services.risk.reconcile import AccountRead, AccountWatch, PositionWatch
from services.risk.store import RiskStore

EVAL_PERIOD_S = 0.25
TICKS_PERIOD_S = 0.1  # volatility samples once a second and staleness counts in seconds
RECONCILE_PERIOD_S = 15.0
ACCOUNT_PERIOD_S = 1.0  # live: how often the exchange balances execution reconciled are re-read


class Handlers:
    name = "risk"
    rt: Runtime
    cfg: RiskSettings
    live: bool
    engine: RiskEngine
    store: RiskStore
    writer_lock: WriterLock
    m: RiskMetrics
    db: DbHealth
    account_watch: AccountWatch
    ticks: Conflated[Tick]

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self._events_lock = asyncio.Lock()
        self._db_lock = asyncio.Lock()
        self.positions = PositionWatch()
        self._prev_state_age_s: float | None = None
        self._hold_until: float | None = None

    async def _alert(self, a: alerts.AlertAction) -> None:
        await self.rt.alert(a.severity, a.title, a.detail, dedup_key=a.dedup_key)

    # -- retained state -------------------------------------------------------------------------
    async def _load_account(self) -> None:
        """Read `kv_state.account_state`; a fresh database starts from the configured equity."""
        st, self._prev_state_age_s = await self.store.account_state()
        if st is not None:
            self.engine.restore(st)
            self.rt.log.info(
                "account state restored",
                state=self.engine.sm.state,
                breakers=sorted(self.engine.board.active),
                daily=str(self.engine.book.daily_realized),
            )
        else:
            self.engine.account_known = True
            self.rt.log.info(
                "no account state yet; starting from configured equity",
                equity=str(self.cfg.starting_equity_usdt),
            )
        await self._persist(force=True)

    async def _reconcile_kill_switch(self) -> None:
        """Postgres audit and the bus must agree (`reconcile.reassert_from_audit`, `reconcile.standing_action`)."""
        rt, engine = self.rt, self.engine
        last = await self.store.last_audit()
        reassert = reconcile.reassert_from_audit(last, self.latch.engaged)
        if reassert is not None:
            rt.log.warning("kill switch engaged in audit but not on the bus; re-asserting")
            await rt.bus.publish(subjects.kill_switch(), reassert.cmd)
            await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
            return
        try:
            standing = await read_standing(rt.bus)
        except Exception:
            return  # the latch already says unknown (= engaged)
        halted = engine.sm.state == "HALTED"
        act = reconcile.standing_action(last, standing, self.latch.release_key, halted, engine.sm.since)
        if isinstance(act, reconcile.RefuseStanding):
            await record_refusal(rt, act.cmd, act.reason)
        elif act is not None:
            await self.store.audit(act.cmd)
            if act.ack:
                await self._ack(act.cmd)
            if act.release:
                engine.set_kill_switch(False, True, rt.clock.now())
                events, refused = engine.release(rt.clock.now())
                await self._handle(events)
                if refused:
                    rt.log.warning("release given while risk was down refused", reason=refused)

    async def _read_drift(self) -> None:
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
    async def _on_bus_lost(self) -> None:
        self.latch.set_unknown("lost NATS connection")
        self.engine.kill_known = False

    async def _on_unreadable_kill_switch(self, reason: str, seq: int) -> None:
        out = self.latch.on_unreadable(reason, seq, self.rt.clock.now())
        if out.outcome != "unreadable":
            return  # older than the command held
        self.engine.kill_known = False
        self.rt.log.error("unreadable kill-switch command; treating as engaged", reason=reason[:200], seq=seq)
        await alert_unreadable(self.rt, self.latch)

    async def _on_bus_back(self) -> None:
        await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
        await self._handle(
            self.engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
        )

    async def _ack(self, cmd: KillSwitchCommand, detail: str = "", engaged: bool | None = None) -> None:
        ack = KillSwitchAcknowledged(
            ts=self.rt.clock.now(),
            command_id=cmd.id,
            service=self.name,
            engaged=cmd.action == "engage" if engaged is None else engaged,
            detail=detail[:1000],
        )
        await self.rt.bus.publish(subjects.kill_switch_ack(self.name), ack)

    async def on_kill_switch(self, cmd: KillSwitchCommand, seq: int) -> None:
        engine = self.engine
        out = self.latch.on_command(cmd, seq)
        if out.outcome == "refused":  # a release without operator authority: nothing changed
            await record_refusal(self.rt, cmd, out.reason)
            await self._ack(cmd, detail=out.reason, engaged=self.latch.blocks)
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
        await self.store.audit(cmd)
        self.rt.log.warning("kill switch", action=cmd.action, reason=cmd.reason, actor=cmd.actor)
        await self._ack(cmd, detail=f"trading stays HALTED: {refused}" if refused else "")
        await self._handle(events)
        if refused:
            await self._alert(alerts.release_refused(refused))

    # -- market inputs --------------------------------------------------------------------------
    def apply_ticks(self) -> None:
        """Hand the newest tick of every symbol that ticked since the last call to the engine."""
        ticks = self.ticks.drain()
        if ticks:
            for tick in ticks:
                self.rt.clock.observe(tick.ts)  # a data clock (replay) moves on the data
            now = self.rt.clock.now()
            for tick in ticks:
                self.engine.on_tick(tick.symbol, tick.last, tick.ts, now)

    async def _apply_ticks_loop(self) -> None:
        while True:
            await asyncio.sleep(TICKS_PERIOD_S)
            self.apply_ticks()

    async def on_market_status(self, st: MarketStatus, subject: str) -> None:
        self.engine.on_market_status(st.symbol, st.status == "stale", st.reason)

    async def on_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        if hb.service != self.name:
            self.engine.on_heartbeat(hb.service, self.rt.clock.now())

    async def on_drift(self, st: DriftStatus, subject: str) -> None:
        self.engine.on_drift(st.symbol, st.detected, st.reason)
        await self._handle(self.engine.evaluate(self.rt.clock.now()))

    # -- fills and orders -----------------------------------------------------------------------
    async def on_fill(self, fill: Fill, subject: str) -> None:
        """Apply a fill once: ledger row and new account state in one transaction, memory after commit."""
        engine, rt = self.engine, self.rt
        async with self._db_lock:
            if await self.store.fill_applied(fill):
                rt.log.info("fill already applied", trade_id=fill.trade_id)
                return
            saved = Checkpoint.take(engine)
            now = rt.clock.now()
            outcome, events = engine.on_fill(fill, now)
            snap = engine.snapshot(now)
            try:
                await self.store.write_fill(fill, outcome, snap)  # a fenced writer's rolls back (redelivered)
            except Exception:
                saved.restore(engine)
                self._db_failed("fill not applied: database write failed")
                raise  # not acked: JetStream redelivers it
            self._db_succeeded()
        self.m.fills.labels(side=fill.side).inc()
        rt.log.info(
            "fill applied",
            symbol=fill.symbol,
            side=fill.side,
            qty=str(fill.quantity),
            realized=str(outcome.realized_own),
            losing=outcome.losing_trade,
        )
        for a in alerts.fill_alerts(fill, outcome, self.cfg.pnl_divergence_usdt):
            await self._alert(a)
        await self._handle(events)
        await self._publish_account(snap)

    async def on_order(self, ev: OrderEvent, subject: str) -> None:
        """Execution's order events: a reservation follows its order until the order is terminal."""
        self.engine.on_order(ev.verdict_id, ev.client_order_id, ev.status, ev.filled_quantity, ev.quantity)

    async def _rebuild_reservations(self) -> None:
        """After a (re)start or a takeover: the journal's open orders (and terminal ones whose fills are still
        on their way) are reserved again; if a writer was deciding moments ago, hold (`reconcile.takeover_hold_s`)."""
        orders = await self.store.orders_to_reserve()
        reconcile.adopt(self.engine, orders, self.rt.clock.now())
        hold_s = reconcile.takeover_hold_s(
            self._prev_state_age_s, self.cfg.verdict_ttl_s, self.cfg.persist_interval_s
        )
        if hold_s is not None:  # also on taking the lock back: another writer may have decided meanwhile
            self.engine.account_known = False
            self._hold_until = self.rt.clock.monotonic() + hold_s
            self.rt.log.warning(
                "a previous risk writer was deciding moments ago; holding until its verdicts have expired",
                hold_s=hold_s,
            )
        self.rt.log.info("reservations rebuilt from the journal", orders=len(orders))

    async def _end_hold(self) -> None:
        """The previous writer's verdicts have all expired: the journal now has every order they became."""
        orders = await self.store.orders_to_reserve(timeout=3.0)
        reconcile.adopt(self.engine, orders, self.rt.clock.now())
        self._hold_until = None
        self.engine.account_known = (
            not self.live or self.account_watch.fresh
        )  # live: while balances are fresh
        self.rt.log.info("hold after takeover over; reservations complete", orders=len(orders))

    async def _confirm_reservations(self, all_open: bool = False) -> None:
        """Ask the journal about verdicts past their expiry with no order seen and, with `all_open`, about
        every reservation (`reconcile.to_confirm`, `reconcile.settle`)."""
        now = self.rt.clock.now()
        due, ask = reconcile.to_confirm(self.engine.reservations, now, all_open)
        if ask:
            reconcile.settle(self.engine, due, ask, await self.store.orders_for(ask), now)

    async def _sync_exchange_account(self) -> None:
        """Live: adopt the exchange balances execution reconciled (`balances`) as the book's cash and positions,
        or hold (`reconcile.AccountWatch`)."""
        engine = self.engine
        async with self._db_lock:  # no fill is applied between the read and the adoption
            try:
                account, unapplied = await self.store.exchange_account()
                read = AccountRead(account, unapplied)
            except Exception as exc:
                read = AccountRead(error=type(exc).__name__)
            d = self.account_watch.decide(read)
            if d.op == "unknown":
                engine.account_known = False
                if d.alert is not None:
                    self.rt.log.error("live account state unknown: refusing every verdict", reason=d.why)
                    await self._alert(d.alert)
            elif d.op == "adopt" and read.account is not None:
                engine.sync_account(read.account.balances)
                if self._hold_until is None:
                    engine.account_known = True
                if d.known_again:
                    self.rt.log.info("live account state known again", equity=str(engine.book.equity()))

    async def _reconcile_positions(self) -> None:
        """Read execution's positions; SELL sizing uses the smaller of the two views, and a difference that
        persists over two checks alerts (`reconcile.PositionWatch`)."""
        try:
            external = reconcile.held(await self.store.execution_positions())
        except Exception as exc:
            self.rt.log.warning("execution positions unreadable", error=str(exc))
            return
        self.engine.external_positions = external
        alert = self.positions.check(self.engine.position_mismatches(external))
        if alert is not None:
            self.rt.log.error("positions disagree with execution", detail=alert.detail)
            await self._alert(alert)

    # -- signals and operator controls ----------------------------------------------------------
    async def on_signal(self, sig: Signal, subject: str) -> None:
        if sig.side == "HOLD":
            return
        engine, rt = self.engine, self.rt
        engine.db_ok = self.db.fresh(rt.clock.monotonic())
        tick = self.ticks.take(subjects.last(sig.symbol))  # the freshest price of this symbol
        rt.clock.observe(sig.ts)
        if tick is not None:
            rt.clock.observe(tick.ts)
            engine.on_tick(tick.symbol, tick.last, tick.ts, rt.clock.now())
        with self.m.decision.time():
            decision = engine.decide(sig, rt.clock.now())
        verdict = decision.verdict
        # No lock round trip here: the verdict carries this writer's epoch (risk_epoch), and execution's journal
        # insert of its order refuses an epoch a successor has replaced, in the same statement.
        await rt.bus.publish(subjects.verdict(sig.symbol), verdict)
        self.m.verdict(sig, verdict)
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
            await self._handle(decision.events)

    async def on_trading_control(self, cmd: TradingControlCommand, subject: str) -> None:
        """Operator pause / resume / exit: `services/risk/control.py` decides; an exit's verdict goes out like any."""
        engine, rt = self.engine, self.rt
        engine.db_ok = self.db.fresh(rt.clock.monotonic())
        tick = self.ticks.take(subjects.last(cmd.symbol)) if cmd.symbol else None
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
        await self._handle(out.events)
        await self._persist(force=True)
        result = control.control_result(
            self.name, cmd, out, cast(TradingState, engine.sm.state), rt.clock.now()
        )
        await rt.bus.publish(subjects.trading_control_result(self.name), result)

    # -- events: Postgres, bus, metric, alert ---------------------------------------------------
    async def _handle(self, events: list[Event]) -> None:
        if not events:
            return
        async with self._events_lock:
            snap: AccountState | None = None
            try:
                snap = await self.store.write_events(events, self.engine.sm, self._snapshot)
                self._db_succeeded()
            except Exception as exc:
                self._db_failed(f"event write failed: {type(exc).__name__}: {exc}")
                snap = None
            for ev in events:
                await self._announce(ev)
            if snap is not None:
                await self._publish_account(snap)

    async def _announce(self, ev: Event) -> None:
        rt = self.rt
        if isinstance(ev, TradingStateChanged):
            subject = subjects.trading_state()
        else:
            subject = (
                subjects.breaker_tripped() if isinstance(ev, BreakerTripped) else subjects.breaker_cleared()
            )
        try:
            await rt.bus.publish(subject, ev)
        except Exception as exc:
            rt.log.error("risk event publish failed", kind=type(ev).__name__, error=str(exc))
        if isinstance(ev, TradingStateChanged):
            self.m.state_changed(ev)
            rt.log.warning("trading state changed", state=ev.state, previous=ev.previous, reason=ev.reason)
            await self._alert(alerts.trading_state(ev))
        elif isinstance(ev, BreakerTripped):
            self.m.trips.labels(breaker=ev.breaker).inc()
            rt.log.warning(
                "breaker tripped", breaker=ev.breaker, effect=ev.effect, symbol=ev.symbol, reason=ev.reason
            )
            alert = alerts.breaker_tripped(ev)
            if alert is not None:
                await self._alert(alert)
        else:
            rt.log.info("breaker cleared", breaker=ev.breaker, symbol=ev.symbol, reason=ev.reason)

    def _snapshot(self) -> AccountState:
        return self.engine.snapshot(self.rt.clock.now())

    async def _publish_account(self, snap: AccountState) -> None:
        try:
            await self.rt.bus.publish(subjects.account(), snap)
        except Exception as exc:
            self.rt.log.warning("account state publish failed", error=str(exc))

    # -- persistence and database health -------------------------------------------------------
    def _db_failed(self, why: str) -> None:
        self.db.failed()
        self.engine.db_ok = False
        self.m.db_ok.set(0)
        self.rt.log.error("database unavailable: refusing every verdict", reason=why)

    def _db_succeeded(self) -> None:
        self.db.succeeded(self.rt.clock.monotonic())
        self.engine.db_ok = True
        self.m.db_ok.set(1)

    async def _persist(self, force: bool = False) -> None:
        engine = self.engine
        async with self._db_lock:
            snap = engine.snapshot(self.rt.clock.now())
            try:
                await self.store.write_state(snap, engine.sm)  # never overwrites a successor's state
            except Exception as exc:
                if force:
                    raise
                self._db_failed(f"{type(exc).__name__}: {exc}")
                return
            self._db_succeeded()
        self.m.account(snap, self.latch.blocks)

    async def _loop(self) -> None:
        """Re-evaluate the breakers on time alone (staleness, heartbeats, rollovers) and persist."""
        clock, interval = self.rt.clock, self.cfg.persist_interval_s
        next_persist = next_account = clock.monotonic()
        next_reconcile = clock.monotonic() + RECONCILE_PERIOD_S
        while True:
            await asyncio.sleep(EVAL_PERIOD_S)
            engine = self.engine
            engine.db_ok = self.db.fresh(clock.monotonic())
            self.apply_ticks()  # evaluate against the newest prices, not ones up to TICKS_PERIOD_S old
            try:
                await self._handle(engine.evaluate(clock.now()))
                if clock.monotonic() >= next_persist:
                    next_persist = clock.monotonic() + interval
                    await self._persist()
                if self._hold_until is not None and clock.monotonic() >= self._hold_until:
                    await self._end_hold()
                if self.live and clock.monotonic() >= next_account:
                    next_account = clock.monotonic() + ACCOUNT_PERIOD_S
                    await self._sync_exchange_account()
                full = clock.monotonic() >= next_reconcile
                await self._confirm_reservations(all_open=full)
                if full:
                    next_reconcile = clock.monotonic() + RECONCILE_PERIOD_S
                    await self._reconcile_positions()
            except Exception as exc:  # keep evaluating; the database flag already refuses verdicts
                self.rt.log.error("risk loop iteration failed", error=repr(exc))

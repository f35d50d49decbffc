"""risk's upkeep (wiring): the time-driven loop and the reconciliations with the audit, the journal and the
exchange account; the newest price per symbol. What to do is decided in `reconcile.py`; the reads are
`store.py`'s, the writes the writer seat's (`writer.py`)."""

from __future__ import annotations

import asyncio

from libs.common import subjects
from libs.common.conflate import Conflated
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, Tick
from libs.common.kill_switch import read_standing, record_refusal, refresh_latch
from services.risk import reconcile
from services.risk.ports import RiskPorts
from services.risk.reconcile import AccountRead, AccountWatch, PositionWatch
from services.risk.writer import WriterSeat

EVAL_PERIOD_S = 0.25
RECONCILE_PERIOD_S = 15.0
ACCOUNT_PERIOD_S = 1.0  # live: how often the exchange balances execution reconciled are re-read


class Upkeep:
    def __init__(self, p: RiskPorts, seat: WriterSeat, account_watch: AccountWatch, name: str) -> None:
        self.p, self.seat, self.account_watch, self.name = p, seat, account_watch, name
        self.positions = PositionWatch()
        self.hold_until: float | None = None  # after a takeover: deciding nothing before this monotonic time
        self.ticks: Conflated[Tick] | None = None  # md.last, once the writer subscribed to it

    # -- the kill switch against the audit ------------------------------------------------------
    async def reconcile_kill_switch(self) -> None:
        """Postgres audit and the bus must agree (`reconcile.reassert_from_audit`, `reconcile.standing_action`)."""
        rt, engine, latch = self.p.rt, self.p.engine, self.p.latch
        last = await self.p.store.last_audit()
        reassert = reconcile.reassert_from_audit(last, latch.engaged)
        if reassert is not None:
            rt.log.warning("kill switch engaged in audit but not on the bus; re-asserting")
            await rt.bus.publish(subjects.kill_switch(), reassert.cmd)
            await refresh_latch(rt.bus, latch, rt.log, rt.clock.now())
            return
        try:
            standing = await read_standing(rt.bus)
        except Exception:
            return  # the latch already says unknown (= engaged)
        halted = engine.sm.state == "HALTED"
        act = reconcile.standing_action(last, standing, latch.release_key, halted, engine.sm.since)
        if isinstance(act, reconcile.RefuseStanding):
            await record_refusal(rt, act.cmd, act.reason)
        elif act is not None:
            await self.p.store.audit(act.cmd)
            if act.ack:
                await self.ack(act.cmd)
            if act.release:
                engine.set_kill_switch(False, True, rt.clock.now())
                events, refused = engine.release(rt.clock.now())
                await self.seat.handle(events)
                if refused:
                    rt.log.warning("release given while risk was down refused", reason=refused)

    async def ack(self, cmd: KillSwitchCommand, detail: str = "", engaged: bool | None = None) -> None:
        ack = KillSwitchAcknowledged(
            ts=self.p.rt.clock.now(),
            command_id=cmd.id,
            service=self.name,
            engaged=cmd.action == "engage" if engaged is None else engaged,
            detail=detail[:1000],
        )
        await self.p.rt.bus.publish(subjects.kill_switch_ack(self.name), ack)

    # -- reservations, the live account, positions -----------------------------------------------
    async def rebuild_reservations(self) -> None:
        """After a (re)start or a takeover: the journal's open orders (and terminal ones whose fills are still
        on their way) are reserved again; if a writer was deciding moments ago, hold (`reconcile.takeover_hold_s`)."""
        rt, cfg, engine = self.p.rt, self.p.cfg, self.p.engine
        orders = await self.p.store.orders_to_reserve()
        reconcile.adopt(engine, orders, rt.clock.now())
        hold_s = reconcile.takeover_hold_s(
            self.seat.prev_state_age_s, cfg.verdict_ttl_s, cfg.persist_interval_s
        )
        if hold_s is not None:  # also on taking the lock back: another writer may have decided meanwhile
            engine.account_known = False
            self.hold_until = rt.clock.monotonic() + hold_s
            rt.log.warning(
                "a previous risk writer was deciding moments ago; holding until its verdicts have expired",
                hold_s=hold_s,
            )
        rt.log.info("reservations rebuilt from the journal", orders=len(orders))

    async def _end_hold(self) -> None:
        """The previous writer's verdicts have all expired: the journal now has every order they became."""
        rt, engine = self.p.rt, self.p.engine
        orders = await self.p.store.orders_to_reserve(timeout=3.0)
        reconcile.adopt(engine, orders, rt.clock.now())
        self.hold_until = None
        engine.account_known = not self.p.live or self.account_watch.fresh  # live: while balances are fresh
        rt.log.info("hold after takeover over; reservations complete", orders=len(orders))

    async def _confirm_reservations(self, all_open: bool = False) -> None:
        """Ask the journal about verdicts past their expiry with no order seen and, with `all_open`, about
        every reservation (`reconcile.to_confirm`, `reconcile.settle`)."""
        now, engine = self.p.rt.clock.now(), self.p.engine
        due, ask = reconcile.to_confirm(engine.reservations, now, all_open)
        if ask:
            reconcile.settle(engine, due, ask, await self.p.store.orders_for(ask), now)

    async def sync_exchange_account(self) -> None:
        """Live: adopt the exchange balances execution reconciled (`balances`) as the book's cash and positions,
        or hold (`reconcile.AccountWatch`)."""
        engine, log = self.p.engine, self.p.rt.log
        async with self.seat.db_lock:  # no fill is applied between the read and the adoption
            try:
                account, unapplied = await self.p.store.exchange_account()
                read = AccountRead(account, unapplied)
            except Exception as exc:
                read = AccountRead(error=type(exc).__name__)
            d = self.account_watch.decide(read)
            if d.op == "unknown":
                engine.account_known = False
                if d.alert is not None:
                    log.error("live account state unknown: refusing every verdict", reason=d.why)
                    await self.seat.alert(d.alert)
            elif d.op == "adopt" and read.account is not None:
                engine.sync_account(read.account.balances)
                if self.hold_until is None:
                    engine.account_known = True
                if d.known_again:
                    log.info("live account state known again", equity=str(engine.book.equity()))

    async def _reconcile_positions(self) -> None:
        """Read execution's positions; SELL sizing uses the smaller of the two views, and a difference that
        persists over two checks alerts (`reconcile.PositionWatch`)."""
        log, engine = self.p.rt.log, self.p.engine
        try:
            external = reconcile.held(await self.p.store.execution_positions())
        except Exception as exc:
            log.warning("execution positions unreadable", error=str(exc))
            return
        engine.external_positions = external
        alert = self.positions.check(engine.position_mismatches(external))
        if alert is not None:
            log.error("positions disagree with execution", detail=alert.detail)
            await self.seat.alert(alert)

    # -- prices ------------------------------------------------------------------------------------
    def take_tick(self, symbol: str) -> Tick | None:
        """The newest price of one symbol, if it ticked since it was last handed out."""
        return self.ticks.take(subjects.last(symbol)) if self.ticks is not None else None

    def apply_ticks(self) -> None:
        """Hand the newest tick of every symbol that ticked since the last call to the engine."""
        ticks = self.ticks.drain() if self.ticks is not None else []
        if ticks:
            clock = self.p.rt.clock
            for tick in ticks:
                clock.observe(tick.ts)  # a data clock (replay) moves on the data
            now = clock.now()
            for tick in ticks:
                self.p.engine.on_tick(tick.symbol, tick.last, tick.ts, now)

    # -- on time alone ----------------------------------------------------------------------------
    async def loop(self) -> None:
        """Re-evaluate the breakers on time alone (staleness, heartbeats, rollovers) and persist."""
        clock, interval, engine = self.p.rt.clock, self.p.cfg.persist_interval_s, self.p.engine
        next_persist = next_account = clock.monotonic()
        next_reconcile = clock.monotonic() + RECONCILE_PERIOD_S
        while True:
            await asyncio.sleep(EVAL_PERIOD_S)
            engine.db_ok = self.p.db.fresh(clock.monotonic())
            self.apply_ticks()  # evaluate against the newest prices, not ones up to TICKS_PERIOD_S old
            try:
                await self.seat.handle(engine.evaluate(clock.now()))
                if clock.monotonic() >= next_persist:
                    next_persist = clock.monotonic() + interval
                    await self.seat.persist()
                if self.hold_until is not None and clock.monotonic() >= self.hold_until:
                    await self._end_hold()
                if self.p.live and clock.monotonic() >= next_account:
                    next_account = clock.monotonic() + ACCOUNT_PERIOD_S
                    await self.sync_exchange_account()
                full = clock.monotonic() >= next_reconcile
                await self._confirm_reservations(all_open=full)
                if full:
                    next_reconcile = clock.monotonic() + RECONCILE_PERIOD_S
                    await self._reconcile_positions()
            except Exception as exc:  # keep evaluating; the database flag already refuses verdicts
                self.p.rt.log.error("risk loop iteration failed", error=repr(exc))

"""risk's writer seat (wiring): the single-writer lock held or lost (the fencing), and what only the writer
writes: events persisted (`store.py`), published, measured and alerted (`alerts.py`); the account state
persisted and the database's health kept (`health.py`).

One object owns the seat, so that losing it is one method (`lose`) the handlers and the lock check both call,
and the seat's owner learns it from `watch` (it raises once another instance holds the lock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from libs.common import subjects
from libs.common.contracts import AccountState, BreakerTripped, TradingStateChanged
from libs.common.errors import OperationalError
from libs.common.writer_lock import WriterLock
from services.risk import alerts
from services.risk.core import Event
from services.risk.ports import RiskPorts

STANDBY = "standby: another risk instance holds the writer lock; deciding nothing"


class WriterSeat:
    def __init__(self, p: RiskPorts, lock: WriterLock, check_s: float) -> None:
        self.p, self.lock, self.check_s = p, lock, check_s
        self.seated = False  # this instance holds the single-writer lock
        self.fenced = ""  # why it lost the lock ("" while it has not)
        self.standby_reason = STANDBY
        self.events_lock = asyncio.Lock()
        self.db_lock = asyncio.Lock()  # no fill applied between an account read and its adoption
        self.prev_state_age_s: float | None = None  # the persisted state's age when this writer read it

    # -- the seat -------------------------------------------------------------------------------
    def take(self) -> None:
        """The lock is this instance's: every verdict carries its epoch; execution refuses an older one."""
        self.p.engine.epoch = self.lock.epoch
        self.p.rt.log.info("writer lock acquired; this risk instance decides", epoch=self.p.engine.epoch)
        self.seated, self.standby_reason = True, ""
        self.p.m.writer.set(1)

    def restored(self) -> None:
        """The lock came back (Postgres was away) and the state has been re-read: deciding again."""
        self.p.engine.is_writer, self.fenced = True, ""

    async def lose(self, why: str) -> None:
        """Fenced: approve nothing, write nothing (the lock check in each write rolls it back)."""
        if not self.seated:
            return
        self.seated, self.fenced = False, why
        self.p.engine.is_writer = False
        self.standby_reason = f"fenced: {why}"
        self.p.m.writer.set(0)
        self.p.rt.log.error("risk lost its writer lock; approving nothing", reason=why)
        await self.alert(alerts.writer_lock_lost(self.p.rt.instance, why))

    async def watch(self, become: Callable[[], Awaitable[None]]) -> None:
        """Stand by until the lock is free, then `become` the writer. As the writer, check the lock every
        `check_s`; once lost, decide nothing (every verdict refused `not_writer`) and try to take it again:
        if another instance holds it, stop (it needs this process's durable consumers); if Postgres is down,
        keep refusing until it is back."""
        while True:
            await asyncio.sleep(self.check_s)
            if self.seated:
                if not await self.lock.still_held():
                    await self.lose("the writer lock's session is gone")
                continue
            try:
                got = await self.lock.try_acquire()
            except Exception as exc:
                self.p.rt.log.warning("writer lock attempt failed", error=str(exc))
                continue
            if got:
                await become()
            elif self.fenced:
                raise OperationalError(f"risk lost the single-writer lock to another instance: {self.fenced}")

    async def alert(self, a: alerts.AlertAction) -> None:
        await self.p.rt.alert(a.severity, a.title, a.detail, dedup_key=a.dedup_key)

    # -- events: Postgres, bus, metric, alert ---------------------------------------------------
    async def handle(self, events: list[Event]) -> None:
        if not events:
            return
        async with self.events_lock:
            snap: AccountState | None = None
            try:
                snap = await self.p.store.write_events(events, self.p.engine.sm, self.snapshot)
                self.db_succeeded()
            except Exception as exc:
                self.db_failed(f"event write failed: {type(exc).__name__}: {exc}")
                snap = None
            for ev in events:
                await self._announce(ev)
            if snap is not None:
                await self.publish_account(snap)

    async def _announce(self, ev: Event) -> None:
        rt, m = self.p.rt, self.p.m
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
            m.state_changed(ev)
            rt.log.warning("trading state changed", state=ev.state, previous=ev.previous, reason=ev.reason)
            await self.alert(alerts.trading_state(ev))
        elif isinstance(ev, BreakerTripped):
            m.trips.labels(breaker=ev.breaker).inc()
            rt.log.warning(
                "breaker tripped", breaker=ev.breaker, effect=ev.effect, symbol=ev.symbol, reason=ev.reason
            )
            alert = alerts.breaker_tripped(ev)
            if alert is not None:
                await self.alert(alert)
        else:
            rt.log.info("breaker cleared", breaker=ev.breaker, symbol=ev.symbol, reason=ev.reason)

    def snapshot(self) -> AccountState:
        return self.p.engine.snapshot(self.p.rt.clock.now())

    async def publish_account(self, snap: AccountState) -> None:
        try:
            await self.p.rt.bus.publish(subjects.account(), snap)
        except Exception as exc:
            self.p.rt.log.warning("account state publish failed", error=str(exc))

    # -- persistence and database health -------------------------------------------------------
    def db_failed(self, why: str) -> None:
        self.p.db.failed()
        self.p.engine.db_ok = False
        self.p.m.db_ok.set(0)
        self.p.rt.log.error("database unavailable: refusing every verdict", reason=why)

    def db_succeeded(self) -> None:
        self.p.db.succeeded(self.p.rt.clock.monotonic())
        self.p.engine.db_ok = True
        self.p.m.db_ok.set(1)

    async def persist(self, force: bool = False) -> None:
        engine = self.p.engine
        async with self.db_lock:
            snap = engine.snapshot(self.p.rt.clock.now())
            try:
                await self.p.store.write_state(snap, engine.sm)  # never overwrites a successor's state
            except Exception as exc:
                if force:
                    raise
                self.db_failed(f"{type(exc).__name__}: {exc}")
                return
            self.db_succeeded()
        self.p.m.account(snap, self.p.latch.blocks)

    # -- retained state -------------------------------------------------------------------------
    async def load_account(self) -> None:
        """Read `kv_state.account_state`; a fresh database starts from the configured equity."""
        engine, log = self.p.engine, self.p.rt.log
        st, self.prev_state_age_s = await self.p.store.account_state()
        if st is not None:
            engine.restore(st)
            log.info(
                "account state restored",
                state=engine.sm.state,
                breakers=sorted(engine.board.active),
                daily=str(engine.book.daily_realized),
            )
        else:
            engine.account_known = True
            log.info(
                "no account state yet; starting from configured equity",
                equity=str(self.p.cfg.starting_equity_usdt),
            )
        await self.persist(force=True)

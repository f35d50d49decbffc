"""risk's writes (wiring): events persisted (`store.py`), published, measured and alerted (`alerts.py`);
the account state persisted and the database's health kept (`health.py`)."""

from __future__ import annotations

import asyncio

from libs.common import subjects
from libs.common.conflate import Conflated
from libs.common.contracts import AccountState, BreakerTripped, Tick, TradingStateChanged
from libs.common.kill_switch import KillSwitchLatch
from libs.common.service import Runtime
from libs.common.settings import RiskSettings
from libs.common.writer_lock import WriterLock
from services.risk import alerts
from services.risk.core import Event, RiskEngine
from services.risk.health import DbHealth
from services.risk.metrics import RiskMetrics
from services.risk.reconcile import AccountWatch, PositionWatch
from services.risk.store import RiskStore


class Writer:
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
    writer: bool  # this instance holds the single-writer lock (the shell's)

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self._events_lock = asyncio.Lock()
        self._db_lock = asyncio.Lock()
        self.positions = PositionWatch()
        self._prev_state_age_s: float | None = None
        self._hold_until: float | None = None

    async def _lost_writer_lock(self, why: str) -> None:
        """Fence this instance (the shell's: it owns the writer seat)."""
        raise NotImplementedError

    async def _alert(self, a: alerts.AlertAction) -> None:
        await self.rt.alert(a.severity, a.title, a.detail, dedup_key=a.dedup_key)

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

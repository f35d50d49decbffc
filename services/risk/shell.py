"""risk shell (wiring): the writer lock, start-up and the bus subscriptions. The inputs are handled by
`handlers.py`, the writes by `writer.py`, the time-driven upkeep by `upkeep.py`. Decisions are the core's (`core.py`, `control.py`) and the pure rules'
(`alerts.py`, `reconcile.py`, `health.py`); every SQL statement is in `store.py`.

Fail closed: the engine starts with the kill switch unknown (= engaged) and the account unknown; a
failed database write marks the database unavailable (every verdict refused) until a write succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from libs.common import subjects
from libs.common.contracts import (
    DriftStatus,
    Fill,
    Heartbeat,
    KillSwitchCommand,
    MarketStatus,
    OrderEvent,
    Signal,
    Tick,
    TradingControlCommand,
)
from libs.common.errors import ConfigurationError, OperationalError
from libs.common.kill_switch import refresh_latch
from libs.common.markets import Markets
from libs.common.service import Runtime
from libs.common.writer_lock import WriterLock
from services.risk import alerts
from services.risk.config import effective_risk_settings, markets_file
from services.risk.core import RiskEngine
from services.risk.handlers import Handlers
from services.risk.health import DbHealth, service_health
from services.risk.metrics import RiskMetrics
from services.risk.reconcile import AccountWatch
from services.risk.store import RiskStore

WRITER_LOCK_NAME = "bnml.risk.writer"
# a standby's takeover attempt and a writer's lock check (verdicts carry the epoch instead)
WRITER_CHECK_S = 1.0
BIND_WAIT_S = 0.25  # between attempts to bind a durable consumer a deposed predecessor still holds


class RiskService(Handlers):
    name = "risk"
    needs_db = True

    def __init__(self) -> None:
        super().__init__()
        self.writer = False
        self._fenced = ""
        self._subscribed = False
        self._taking_work = False  # subscribed as the writer: what `writer_epoch` reports in the heartbeat
        self.standby_reason = "standby: another risk instance holds the writer lock; deciding nothing"

    # -- start ----------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.cfg = cfg = effective_risk_settings(rt.settings)
        self.live = rt.settings.mode == "live"
        path = markets_file(cfg)
        try:
            markets = Markets.load(path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError("risk.markets_path", f"cannot read markets file {path}: {exc}") from None
        self.engine = RiskEngine(cfg, markets, list(rt.settings.symbols), rt.clock.now())
        self.engine.instance = rt.instance
        self.markets_count = len(markets.filters)
        self.m = RiskMetrics(rt.metrics, cfg)
        self.db = DbHealth(cfg.database_stale_after_s)
        self.account_watch = AccountWatch(cfg.account_stale_after_s or 0)
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        # One writer (docs/design.md, safety rule 7): only the holder of the advisory lock decides; a standby waits.
        self.writer_lock = WriterLock(
            rt.settings.database.url.get_secret_value(),
            WRITER_LOCK_NAME,
            "risk",
            holder=rt.instance,
            session_timeout_s=cfg.writer_session_timeout_s,
        )
        self.store = RiskStore(rt.pool, self.writer_lock)
        rt.spawn(self.writer_lock.keep_alive(), "risk-writer-lock-keepalive")
        if await self.writer_lock.try_acquire():
            await self._become_writer()
        else:
            rt.log.warning(self.standby_reason)
        rt.spawn(self._writer_loop(), "risk-writer-lock")

    async def _become_writer(self) -> None:
        """The start-up sequence of the deciding instance: retained state first (docs/design.md, the shape of a
        service): kill switch, then the account, then subscribe. Taking the lock back after losing it re-reads
        the state the same way."""
        rt, engine = self.rt, self.engine
        engine.epoch = self.writer_lock.epoch  # every verdict carries it; execution refuses an older one
        rt.log.info("writer lock acquired; this risk instance decides", epoch=engine.epoch)
        self.writer, self.standby_reason = True, ""
        self.m.writer.set(1)
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        await self._load_account()
        if self.live:  # the exchange's account, not a configured or persisted number
            engine.account_known = False
            await self._sync_exchange_account()
        await self._rebuild_reservations()
        await self._reconcile_kill_switch()
        await self._handle(engine.set_kill_switch(self.latch.engaged, self.latch.known, rt.clock.now()))
        if self._subscribed:  # the lock came back (Postgres was away): state re-read, subscriptions kept
            engine.is_writer, self._fenced = True, ""
            self._taking_work = True
            rt.log.info("risk writer again", trading_state=engine.sm.state)
            return
        self._subscribed = True
        await self._read_drift()
        rt.bus.on_disconnect.append(self._on_bus_lost)
        rt.bus.on_reconnect.append(self._on_bus_back)
        # in stream order with each command's sequence, from the standing one on (libs/common/kill_switch.py)
        await rt.bus.follow(
            "KILL_SWITCH",
            subjects.kill_switch(),
            KillSwitchCommand,
            self.on_kill_switch,
            self._on_unreadable_kill_switch,
        )
        # the last price per symbol is all risk needs: md.last (each symbol's newest tick, conflated by
        # market_data), kept newest-only here too and applied every TICKS_PERIOD_S (and the signal's own
        # symbol right before its decision)
        self.ticks = await rt.bus.subscribe_conflated(subjects.ALL_LAST, Tick)
        rt.spawn(self._apply_ticks_loop(), "risk-ticks")
        await rt.bus.subscribe(subjects.ALL_STATUS, MarketStatus, self.on_market_status)
        await rt.bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, self.on_heartbeat)
        await rt.bus.subscribe(subjects.drift(), DriftStatus, self.on_drift)
        # one fill in flight at a time: after a crash, a fill delivered to the dead process is redelivered
        # (after ack_wait) before any later one, so risk's book applies fills in the journal's order (a SELL
        # applied before its BUY would be booked as an oversell and the BUY as a position never closed)
        await self._bind(
            lambda: rt.bus.consume(
                "FILLS", "risk", subjects.ALL_FILLS, Fill, self.on_fill,
                fail_closed=False, ack_wait_s=10.0, max_ack_pending=1,
            )
        )  # fmt: skip
        # what became of each approved verdict (its reservation lives until the order is terminal); new
        # events only on first creation: the journal rebuild above covers the past
        await self._bind(
            lambda: rt.bus.consume(
                "ORDERS", "risk", subjects.ALL_ORDERS, OrderEvent, self.on_order,
                fail_closed=False, ack_wait_s=10.0, deliver_new_only=True,
            )
        )  # fmt: skip
        await rt.bus.subscribe(subjects.ALL_SIGNALS, Signal, self.on_signal)
        await rt.bus.subscribe(subjects.trading_control(), TradingControlCommand, self.on_trading_control)
        rt.spawn(self._loop(), "risk-evaluate-persist")
        self._taking_work = True
        rt.log.info(
            "risk ready",
            trading_state=engine.sm.state,
            markets=self.markets_count,
            kill_switch_engaged=self.latch.blocks,
        )

    async def _bind(self, subscribe: Callable[[], Awaitable[Any]]) -> None:
        """A durable consumer, once a deposed predecessor has let go of it: a fenced one stops within
        WRITER_CHECK_S of resuming, one still paused (SIGSTOP) holds it until NATS drops its silent connection.
        Nothing is decided meanwhile (signals are subscribed after the consumers); the lock session is kept
        alive (and checked) while waiting."""
        while True:
            try:
                await subscribe()
                return
            except Exception as exc:
                if "bound" not in str(exc):
                    raise
            if not await self.writer_lock.still_held():
                raise OperationalError(
                    "risk lost the single-writer lock while waiting for its durable consumers"
                )
            await asyncio.sleep(BIND_WAIT_S)

    async def _writer_loop(self) -> None:
        """Stand by until the lock is free. As the writer, check it every WRITER_CHECK_S; once lost, decide
        nothing (every verdict refused `not_writer`) and try to take it again: if another instance holds it,
        stop (it needs this process's durable consumers); if Postgres is down, keep refusing until it is back."""
        while True:
            await asyncio.sleep(WRITER_CHECK_S)
            if self.writer:
                if not await self.writer_lock.still_held():
                    await self._lost_writer_lock("the writer lock's session is gone")
                continue
            try:
                got = await self.writer_lock.try_acquire()
            except Exception as exc:
                self.rt.log.warning("writer lock attempt failed", error=str(exc))
                continue
            if got:
                await self._become_writer()
            elif self._fenced:
                raise OperationalError(
                    f"risk lost the single-writer lock to another instance: {self._fenced}"
                )

    async def _lost_writer_lock(self, why: str) -> None:
        """Fenced: approve nothing, write nothing (the lock check in each write rolls it back)."""
        if not self.writer:
            return
        self.writer, self._fenced, self._taking_work = False, why, False
        self.engine.is_writer = False
        self.standby_reason = f"fenced: {why}"
        self.m.writer.set(0)
        self.rt.log.error("risk lost its writer lock; approving nothing", reason=why)
        await self._alert(alerts.writer_lock_lost(self.rt.instance, why))

    async def stop(self) -> None:
        engine = getattr(self, "engine", None)
        if self.writer and engine is not None and engine.account_known:
            try:
                await self._persist()
            except Exception as exc:
                self.rt.log.warning("final state write failed", error=str(exc))
        lock = getattr(self, "writer_lock", None)
        if lock is not None:
            await lock.release()  # a standby takes over at once, not when the session times out

    def writer_epoch(self) -> int | None:
        """The heartbeat's readiness fact: the epoch this instance decides under, once it is subscribed."""
        return self.engine.epoch if self.writer and self._taking_work else None

    def health(self) -> tuple[str, str]:
        engine = getattr(self, "engine", None)
        return service_health(
            self.writer,
            bool(self._fenced),
            self.standby_reason,
            self.latch.blocks,
            self.latch.reason or "",
            engine,
        )

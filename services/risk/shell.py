"""risk shell (wiring): builds the writer seat (`writer.py`: the lock, the fencing, the writes), the
handlers of the inputs (`handlers.py`) and the time-driven upkeep (`upkeep.py`), each given its ports
(`ports.py`), and subscribes them. Decisions are the core's (`core.py`, `control.py`) and the pure rules'
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
from libs.common.kill_switch import KillSwitchLatch, refresh_latch
from libs.common.markets import Markets
from libs.common.service import Runtime
from libs.common.writer_lock import WriterLock
from services.risk.config import effective_risk_settings, markets_file
from services.risk.core import RiskEngine
from services.risk.handlers import Handlers
from services.risk.health import DbHealth, service_health
from services.risk.metrics import RiskMetrics
from services.risk.ports import RiskPorts
from services.risk.reconcile import AccountWatch
from services.risk.store import RiskStore
from services.risk.upkeep import Upkeep
from services.risk.writer import STANDBY, WriterSeat

WRITER_LOCK_NAME = "bnml.risk.writer"
# a standby's takeover attempt and a writer's lock check (verdicts carry the epoch instead)
WRITER_CHECK_S = 1.0
BIND_WAIT_S = 0.25  # between attempts to bind a durable consumer a deposed predecessor still holds


class RiskService:
    """Composition, not inheritance: the writer seat, the handlers and the upkeep are objects given their
    ports (`ports.py`); this class builds them, subscribes their methods and reports health."""

    name = "risk"
    needs_db = True

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()  # before start: health reads it
        self.seat: WriterSeat | None = None
        self._subscribed = False
        self._taking_work = False  # seated and subscribed: what `writer_epoch` reports in the heartbeat

    # -- start ----------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        cfg = effective_risk_settings(rt.settings)
        path = markets_file(cfg)
        try:
            markets = Markets.load(path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError("risk.markets_path", f"cannot read markets file {path}: {exc}") from None
        engine = RiskEngine(cfg, markets, list(rt.settings.symbols), rt.clock.now())
        engine.instance = rt.instance
        self.markets_count = len(markets.filters)
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        # One writer (docs/design.md, safety rule 7): only the holder of the advisory lock decides; a standby waits.
        lock = WriterLock(
            rt.settings.database.url.get_secret_value(),
            WRITER_LOCK_NAME,
            "risk",
            holder=rt.instance,
            session_timeout_s=cfg.writer_session_timeout_s,
        )
        self.p = p = RiskPorts(
            rt=rt,
            cfg=cfg,
            live=rt.settings.mode == "live",
            engine=engine,
            store=RiskStore(rt.pool, lock),
            latch=self.latch,
            m=RiskMetrics(rt.metrics, cfg),
            db=DbHealth(cfg.database_stale_after_s),
        )
        self.seat = seat = WriterSeat(p, lock, WRITER_CHECK_S)
        self.upkeep = Upkeep(p, seat, AccountWatch(cfg.account_stale_after_s or 0), self.name)
        self.handlers = Handlers(p, seat, self.upkeep, self.name)
        rt.spawn(lock.keep_alive(), "risk-writer-lock-keepalive")
        if await lock.try_acquire():
            await self._become_writer()
        else:
            rt.log.warning(seat.standby_reason)
        rt.spawn(seat.watch(self._become_writer), "risk-writer-lock")

    async def _become_writer(self) -> None:
        """The start-up sequence of the deciding instance: retained state first (docs/design.md, the shape of a
        service): kill switch, then the account, then subscribe. Taking the lock back after losing it re-reads
        the state the same way."""
        rt, p, seat, up, h = self.rt, self.p, self.seat, self.upkeep, self.handlers
        assert seat is not None
        engine = p.engine
        self._taking_work = False  # until the state is re-read and the subscriptions are in place
        seat.take()
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        await seat.load_account()
        if p.live:  # the exchange's account, not a configured or persisted number
            engine.account_known = False
            await up.sync_exchange_account()
        await up.rebuild_reservations()
        await up.reconcile_kill_switch()
        await seat.handle(engine.set_kill_switch(self.latch.engaged, self.latch.known, rt.clock.now()))
        if self._subscribed:  # the lock came back (Postgres was away): state re-read, subscriptions kept
            seat.restored()
            self._taking_work = True
            rt.log.info("risk writer again", trading_state=engine.sm.state)
            return
        self._subscribed = True
        await h.read_drift()
        rt.bus.on_disconnect.append(h.on_bus_lost)
        rt.bus.on_reconnect.append(h.on_bus_back)
        # in stream order with each command's sequence, from the standing one on (libs/common/kill_switch.py)
        await rt.bus.follow(
            "KILL_SWITCH",
            subjects.kill_switch(),
            KillSwitchCommand,
            h.on_kill_switch,
            h.on_unreadable_kill_switch,
        )
        # the last price per symbol is all risk needs: md.last (each symbol's newest tick, conflated by
        # market_data), kept newest-only here too and applied every TICKS_PERIOD_S (and the signal's own
        # symbol right before its decision)
        up.ticks = await rt.bus.subscribe_conflated(subjects.ALL_LAST, Tick)
        rt.spawn(h.apply_ticks_loop(), "risk-ticks")
        await rt.bus.subscribe(subjects.ALL_STATUS, MarketStatus, h.on_market_status)
        await rt.bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, h.on_heartbeat)
        await rt.bus.subscribe(subjects.drift(), DriftStatus, h.on_drift)
        # one fill in flight at a time: after a crash, a fill delivered to the dead process is redelivered
        # (after ack_wait) before any later one, so risk's book applies fills in the journal's order (a SELL
        # applied before its BUY would be booked as an oversell and the BUY as a position never closed)
        await self._bind(
            lambda: rt.bus.consume(
                "FILLS", "risk", subjects.ALL_FILLS, Fill, h.on_fill,
                fail_closed=False, ack_wait_s=10.0, max_ack_pending=1,
            )
        )  # fmt: skip
        # what became of each approved verdict (its reservation lives until the order is terminal); new
        # events only on first creation: the journal rebuild above covers the past
        await self._bind(
            lambda: rt.bus.consume(
                "ORDERS", "risk", subjects.ALL_ORDERS, OrderEvent, h.on_order,
                fail_closed=False, ack_wait_s=10.0, deliver_new_only=True,
            )
        )  # fmt: skip
        await rt.bus.subscribe(subjects.ALL_SIGNALS, Signal, h.on_signal)
        await rt.bus.subscribe(subjects.trading_control(), TradingControlCommand, h.on_trading_control)
        rt.spawn(up.loop(), "risk-evaluate-persist")
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
            assert self.seat is not None
            if not await self.seat.lock.still_held():
                raise OperationalError(
                    "risk lost the single-writer lock while waiting for its durable consumers"
                )
            await asyncio.sleep(BIND_WAIT_S)

    async def stop(self) -> None:
        seat = self.seat
        if seat is None:
            return
        if seat.seated and seat.p.engine.account_known:
            try:
                await seat.persist()
            except Exception as exc:
                self.rt.log.warning("final state write failed", error=str(exc))
        await seat.lock.release()  # a standby takes over at once, not when the session times out

    def writer_epoch(self) -> int | None:
        """The heartbeat's readiness fact: the epoch this instance decides under, once it is subscribed."""
        seat = self.seat
        if seat is None or not (seat.seated and self._taking_work):
            return None
        return seat.p.engine.epoch

    def health(self) -> tuple[str, str]:
        seat = self.seat
        if seat is None:  # not started: a standby's answer
            return service_health(False, False, STANDBY, self.latch.blocks, self.latch.reason or "", None)
        return service_health(
            seat.seated,
            bool(seat.fenced),
            seat.standby_reason,
            self.latch.blocks,
            self.latch.reason or "",
            seat.p.engine,
        )

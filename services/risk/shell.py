"""risk shell: signals in, verdicts out; fills, ticks, heartbeats, drift and market status in; breakers,
trading state and the account state published, persisted (Postgres `kv_state`, event tables), measured
and alerted; kill-switch commands audited and acknowledged.

Fail closed: the engine starts with the kill switch unknown (= engaged) and the account unknown; a
failed database write marks the database unavailable (every verdict refused) until a write succeeds.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from decimal import Decimal
from pathlib import Path

from libs.common import subjects
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
    TradingStateChanged,
)
from libs.common.errors import ConfigurationError, OperationalError
from libs.common.kill_switch import (
    KillSwitchLatch,
    alert_unreadable,
    check_authority,
    read_standing,
    record_refusal,
    refresh_latch,
)
from libs.common.markets import ROOT, Markets
from libs.common.service import Runtime
from libs.common.settings.risk import DEFAULT_EFFECTS
from libs.common.writer_lock import WriterLock
from services.risk import control
from services.risk.core import Event, RiskEngine
from services.risk.journal_view import exchange_account, orders_for, orders_to_reserve

EVAL_PERIOD_S = 0.25
TICKS_PERIOD_S = 0.1  # volatility samples once a second and staleness counts in seconds
RECONCILE_PERIOD_S = 15.0
ACCOUNT_PERIOD_S = 1.0  # live: how often the exchange balances execution reconciled are re-read
STATES = ("ACTIVE", "REDUCING", "HALTED")
SEV1_BREAKERS = {"order_loop", "max_drawdown"}
QUIET_BREAKERS = {"cooldown_after_loss"}
WRITER_LOCK_NAME = "bnml.risk.writer"
WRITER_CHECK_S = (
    1.0  # a standby's takeover attempt and a writer's lock check (verdicts carry the epoch instead)
)
BIND_WAIT_S = 0.25  # between attempts to bind a durable consumer a deposed predecessor still holds
BREAKER_REASONS = frozenset(DEFAULT_EFFECTS) | {"trading_reducing", "trading_halted", "kill_switch_engaged"}


def _kv_sql() -> str:
    return (
        "INSERT INTO kv_state (key, value, updated_at) VALUES (%s, %s::jsonb, now())"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    )


class RiskService:
    name = "risk"
    needs_db = True

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()
        self._events_lock = asyncio.Lock()
        self._db_lock = asyncio.Lock()
        self._last_db_ok = 0.0
        self._last_mismatch: set[str] = set()
        self.engine: RiskEngine | None = None
        self.writer = False
        self._fenced = ""
        self._subscribed = False
        self._prev_state_age_s: float | None = None
        self._account_fresh = False
        self._account_why = "not read yet"
        self._hold_until: float | None = None
        self.standby_reason = "standby: another risk instance holds the writer lock; deciding nothing"

    # -- start ----------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        cfg = rt.settings.risk
        # one source of truth for freshness: market_data's staleness and monitoring's heartbeat timeout
        cfg = cfg.model_copy(
            update={
                "stale_after_s": cfg.stale_after_s or rt.settings.market_data.stale_after_s,
                "heartbeat_timeout_s": cfg.heartbeat_timeout_s or rt.settings.monitoring.heartbeat_timeout_s,
            }
        )
        self.live = rt.settings.mode == "live"
        if self.live and cfg.account_stale_after_s is None:
            cfg = cfg.model_copy(
                update={"account_stale_after_s": 3 * rt.settings.execution.reconcile_interval_s}
            )
        self.cfg = cfg
        if rt.settings.mode == "live" and cfg.order_loop_trip_per_10s >= 50:
            # the wide values exist for paper benchmarks only; live keeps the breaker below Binance's limit
            raise ConfigurationError(
                "risk.order_loop_trip_per_10s", "must be below 50 (Binance's 50 orders / 10 s) in live mode"
            )
        path = Path(cfg.markets_path)
        path = path if path.is_absolute() else ROOT / path
        try:
            markets = Markets.load(path)
        except (OSError, ValueError) as exc:
            raise ConfigurationError("risk.markets_path", f"cannot read markets file {path}: {exc}") from None
        self.engine = RiskEngine(cfg, markets, list(rt.settings.symbols), self.rt.clock.now())
        self.engine.instance = rt.instance
        self.markets_count = len(markets.filters)
        self._metrics(rt)
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        # One writer (docs/design.md, safety rule 7): only the holder of the advisory lock decides; a standby waits.
        self.writer_lock = WriterLock(
            rt.settings.database.url.get_secret_value(),
            WRITER_LOCK_NAME,
            "risk",
            holder=rt.instance,
            session_timeout_s=cfg.writer_session_timeout_s,
        )
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
        assert engine is not None
        # every verdict from here on carries this epoch; execution journals no order for an older one
        engine.epoch = self.writer_lock.epoch
        rt.log.info("writer lock acquired; this risk instance decides", epoch=engine.epoch)
        self.writer = True
        self.standby_reason = ""
        self.m_writer.set(1)
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        await self._load_account()
        if self.live:  # the exchange's account, not a configured or persisted number
            engine.account_known = False
            await self._sync_exchange_account()
        if self._subscribed:  # the lock came back (Postgres was away): state re-read, subscriptions kept
            await self._rebuild_reservations()
            await self._reconcile_kill_switch()
            await self._handle(
                engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
            )
            engine.is_writer, self._fenced = True, ""
            rt.log.info("risk writer again", trading_state=engine.sm.state)
            return
        self._subscribed = True
        await self._rebuild_reservations()
        await self._reconcile_kill_switch()
        now = self.rt.clock.now()
        events = engine.set_kill_switch(self.latch.engaged, self.latch.known, now)
        await self._handle(events)
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
                "FILLS",
                "risk",
                subjects.ALL_FILLS,
                Fill,
                self.on_fill,
                fail_closed=False,
                ack_wait_s=10.0,
                max_ack_pending=1,
            )
        )
        # what became of each approved verdict (its reservation lives until the order is terminal); new
        # events only on first creation: the journal rebuild above covers the past
        await self._bind(
            lambda: rt.bus.consume(
                "ORDERS",
                "risk",
                subjects.ALL_ORDERS,
                OrderEvent,
                self.on_order,
                fail_closed=False,
                ack_wait_s=10.0,
                deliver_new_only=True,
            )
        )
        await rt.bus.subscribe(subjects.ALL_SIGNALS, Signal, self.on_signal)
        await rt.bus.subscribe(subjects.trading_control(), TradingControlCommand, self.on_trading_control)
        rt.spawn(self._loop(), "risk-evaluate-persist")
        rt.log.info(
            "risk ready",
            trading_state=engine.sm.state,
            markets=self.markets_count,
            kill_switch_engaged=self.latch.blocks,
        )

    async def _bind(self, subscribe) -> None:
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
        self.writer, self._fenced = False, why
        if self.engine is not None:
            self.engine.is_writer = False
        self.standby_reason = f"fenced: {why}"
        self.m_writer.set(0)
        self.rt.log.error("risk lost its writer lock; approving nothing", reason=why)
        await self.rt.alert(
            "SEV-1",
            "risk lost its writer lock",
            f"{self.rt.instance}: {why}",
            dedup_key="risk:writer-lock-lost",
        )

    def _metrics(self, rt: Runtime) -> None:
        m = rt.metrics
        self.m_verdicts = m.counter("verdicts_total", "Verdicts published", ["outcome", "reason"])
        self.m_decision = m.histogram("decision_seconds", "Time to decide one signal (core)")
        self.m_signal_to_verdict = m.histogram(
            "signal_to_verdict_seconds", "Signal made to its verdict made (queueing in risk included)"
        )
        self.m_tick_to_verdict = m.histogram(
            "tick_to_verdict_seconds", "Event time of the signal's tick to its verdict made"
        )
        self.m_state = m.gauge("trading_state", "1 for the current trading state", ["state"])
        self.m_state_changes = m.counter("trading_state_changes_total", "Trading-state changes", ["state"])
        self.m_trips = m.counter("breaker_trips_total", "Breaker trips", ["breaker"])
        self.m_active = m.gauge("breakers_active", "Breakers in force", ["breaker"])
        self.m_equity = m.gauge("equity_usdt", "Equity by risk's own accounting, USDT")
        self.m_drawdown = m.gauge("drawdown_pct", "Drawdown from peak equity, percent")
        self.m_daily = m.gauge("daily_realized_usdt", "Realized P&L today, USDT")
        self.m_weekly = m.gauge("weekly_realized_usdt", "Realized P&L this week, USDT")
        self.m_vol = m.gauge(
            "market_volatility_ratio", "Short over long realized volatility (highest symbol)"
        )
        self.m_exposure = m.gauge("exposure_usdt", "Total position value, USDT")
        self.m_db_ok = m.gauge("database_ok", "1 while the last state write succeeded")
        self.m_kill = m.gauge(
            "kill_switch_engaged", "1 while the kill switch blocks trading (engaged or unknown)"
        )
        m.gauge(
            "daily_loss_budget_usdt", "risk.daily_loss_budget_usdt (the daily-loss breaker's budget)"
        ).set(float(self.cfg.daily_loss_budget_usdt))
        self.m_fills = m.counter("fills_applied_total", "Fills applied to risk's book", ["side"])
        self.m_writer = m.gauge("writer", "1 while this instance holds the single-writer lock")

    async def _load_account(self) -> None:
        """Read `kv_state.account_state`; a fresh database starts from the configured equity."""
        assert self.engine is not None
        async with self.rt.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT value, extract(epoch FROM now() - updated_at) AS age"
                    " FROM kv_state WHERE key = 'account_state'"
                )
            ).fetchone()
        self._prev_state_age_s = float(row["age"]) if row is not None else None
        if row is not None:
            self.engine.restore(AccountState.model_validate(row["value"]))
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
        """Postgres audit and the bus must agree. Engaged in the audit but not on the bus: re-assert it.
        A command given while risk was down: audit it now (and acknowledge it)."""
        async with self.rt.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT command_id, action, reason, actor, ts FROM kill_switch_audit ORDER BY id DESC LIMIT 1"
                )
            ).fetchone()
        if row and row["action"] == "engage" and not self.latch.engaged:
            cmd = KillSwitchCommand(ts=row["ts"], action="engage", reason=row["reason"], actor=row["actor"])
            self.rt.log.warning("kill switch engaged in audit but not on the bus; re-asserting")
            await self.rt.bus.publish(subjects.kill_switch(), cmd)
            await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
            return
        try:
            standing = await read_standing(self.rt.bus)
        except Exception:
            return  # the latch already says unknown (= engaged)
        if standing is not None and (row is None or row["command_id"] != standing.id):
            authority = check_authority(standing, self.latch.release_key)
            if not authority.allowed:  # an unauthorised standing release: refused, never audited as the state
                await record_refusal(self.rt, standing, authority.reason)
                return
            await self._audit(standing)
            if standing.action == "engage":
                await self._ack(standing)
            elif (
                self.engine
                and self.engine.sm.state == "HALTED"
                and (self.engine.sm.since is None or standing.ts > self.engine.sm.since)
            ):
                self.engine.set_kill_switch(False, True, self.rt.clock.now())
                events, refused = self.engine.release(self.rt.clock.now())
                await self._handle(events)
                if refused:
                    self.rt.log.warning("release given while risk was down refused", reason=refused)

    async def _read_drift(self) -> None:
        try:
            st = await self.rt.bus.last_value("SIGNAL_DRIFT", subjects.drift(), DriftStatus)
        except Exception as exc:
            self.rt.log.warning("drift status unreadable; keeping persisted drift breakers", error=str(exc))
            return
        if st is not None:
            await self.on_drift(st, subjects.drift())
        elif self.engine:
            self.engine.on_drift(None, False, "")

    # -- bus connection -------------------------------------------------------------------------
    async def _on_bus_lost(self) -> None:
        self.latch.set_unknown("lost NATS connection")
        if self.engine:
            self.engine.kill_known = False

    async def _on_unreadable_kill_switch(self, reason: str, seq: int) -> None:
        out = self.latch.on_unreadable(reason, seq, self.rt.clock.now())
        if out.outcome != "unreadable":
            return  # older than the command held
        if self.engine:
            self.engine.kill_known = False
        self.rt.log.error("unreadable kill-switch command; treating as engaged", reason=reason[:200], seq=seq)
        await alert_unreadable(self.rt, self.latch)

    async def _on_bus_back(self) -> None:
        await refresh_latch(self.rt.bus, self.latch, self.rt.log, self.rt.clock.now())
        if self.engine:
            await self._handle(
                self.engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
            )

    # -- kill switch ----------------------------------------------------------------------------
    async def _audit(self, cmd: KillSwitchCommand) -> None:
        async with self.rt.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO kill_switch_audit (command_id, ts, action, engaged, reason, actor, flatten, recorded_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'risk') ON CONFLICT (command_id) DO NOTHING",
                (cmd.id, cmd.ts, cmd.action, cmd.action == "engage", cmd.reason, cmd.actor, cmd.flatten),
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
        assert self.engine is not None
        out = self.latch.on_command(cmd, seq)
        if out.outcome == "refused":  # a release without operator authority: nothing changed
            await record_refusal(self.rt, cmd, out.reason)
            await self._ack(cmd, detail=out.reason, engaged=self.latch.blocks)
            return
        if out.outcome == "confirmed":
            self.engine.set_kill_switch(self.latch.engaged, self.latch.known, self.rt.clock.now())
        if not out.applied:  # older than what the latch holds, or the standing command again
            return
        now = self.rt.clock.now()
        if cmd.action == "engage":
            events, refused = self.engine.set_kill_switch(True, True, now), ""
        else:
            events = self.engine.set_kill_switch(False, True, now)
            more, refused = self.engine.release(now)
            events += more
        await self._audit(cmd)
        self.rt.log.warning("kill switch", action=cmd.action, reason=cmd.reason, actor=cmd.actor)
        await self._ack(cmd, detail=f"trading stays HALTED: {refused}" if refused else "")
        await self._handle(events)
        if refused:
            await self.rt.alert("SEV-2", "release refused: trading stays HALTED", refused)

    # -- market inputs --------------------------------------------------------------------------
    def apply_ticks(self) -> None:
        """Hand the newest tick of every symbol that ticked since the last call to the engine."""
        ticks = self.ticks.drain()
        if ticks:
            for tick in ticks:
                self.rt.clock.observe(tick.ts)  # a data clock (replay) moves on the data
            now = self.rt.clock.now()
            for tick in ticks:
                self.engine.on_tick(tick.symbol, tick.last, tick.ts, now)  # type: ignore[union-attr]

    async def _apply_ticks_loop(self) -> None:
        while True:
            await asyncio.sleep(TICKS_PERIOD_S)
            self.apply_ticks()

    async def on_market_status(self, st: MarketStatus, subject: str) -> None:
        self.engine.on_market_status(st.symbol, st.status == "stale", st.reason)  # type: ignore[union-attr]

    async def on_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        if hb.service != self.name:
            self.engine.on_heartbeat(hb.service, self.rt.clock.now())  # type: ignore[union-attr]

    async def on_drift(self, st: DriftStatus, subject: str) -> None:
        assert self.engine is not None
        self.engine.on_drift(st.symbol, st.detected, st.reason)
        await self._handle(self.engine.evaluate(self.rt.clock.now()))

    # -- fills ----------------------------------------------------------------------------------
    async def on_fill(self, fill: Fill, subject: str) -> None:
        """Apply a fill once: ledger row and new account state in one transaction, memory after commit."""
        engine = self.engine
        assert engine is not None
        async with self._db_lock:
            async with self.rt.pool.connection() as conn:
                seen = await (
                    await conn.execute(
                        "SELECT 1 FROM risk_fill_ledger WHERE exchange = %s AND symbol = %s AND trade_id = %s",
                        (fill.exchange, fill.symbol, fill.trade_id),
                    )
                ).fetchone()
            if seen:
                self.rt.log.info("fill already applied", trade_id=fill.trade_id)
                return
            saved = (
                copy.deepcopy(engine.book),
                copy.deepcopy(engine.reservations),
                dict(engine.board.active),
                (engine.sm.state, engine.sm.reason, engine.sm.since),
                engine.last_breaker_clear_at,
            )
            now = self.rt.clock.now()
            outcome, events = engine.on_fill(fill, now)
            snap = engine.snapshot(now)
            try:
                async with self.rt.pool.connection() as conn, conn.transaction():
                    await self.writer_lock.check_on(conn)  # a fenced writer's fill rolls back (redelivered)
                    await conn.execute(
                        "INSERT INTO risk_fill_ledger (exchange, trade_id, client_order_id, symbol, side, quantity,"
                        " price, fee, fee_asset, realized_own_usdt, realized_reported_usdt, ts)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            fill.exchange,
                            fill.trade_id,
                            fill.client_order_id,
                            fill.symbol,
                            fill.side,
                            fill.quantity,
                            fill.price,
                            fill.fee,
                            fill.fee_asset,
                            outcome.realized_own,
                            outcome.realized_reported,
                            fill.ts,
                        ),
                    )
                    await conn.execute(_kv_sql(), ("account_state", snap.model_dump_json()))
            except Exception:
                engine.book, engine.reservations, engine.board.active, sm, engine.last_breaker_clear_at = (
                    saved
                )
                engine.sm.state, engine.sm.reason, engine.sm.since = sm
                self._db_failed("fill not applied: database write failed")
                raise  # not acked: JetStream redelivers it
            self._db_succeeded()
        self.m_fills.labels(side=fill.side).inc()
        self.rt.log.info(
            "fill applied",
            symbol=fill.symbol,
            side=fill.side,
            qty=str(fill.quantity),
            realized=str(outcome.realized_own),
            losing=outcome.losing_trade,
        )
        if outcome.oversold > 0:
            await self.rt.alert(
                "SEV-1",
                "SELL fill above the held quantity",
                f"{fill.symbol}: sold {fill.quantity}, risk held {outcome.closed_qty}",
            )
        if (
            fill.realized_pnl_usdt != 0
            and abs(fill.realized_pnl_usdt - outcome.realized_own) > self.cfg.pnl_divergence_usdt
        ):
            await self.rt.alert(
                "SEV-2",
                "realized P&L disagrees with execution",
                f"{fill.trade_id}: risk {outcome.realized_own}, execution {fill.realized_pnl_usdt}",
                dedup_key="risk:pnl-divergence",
            )
        await self._handle(events)
        await self._publish_account(snap)

    # -- orders and reservations ----------------------------------------------------------------
    async def on_order(self, ev: OrderEvent, subject: str) -> None:
        """Execution's order events: a reservation follows its order until the order is terminal."""
        self.engine.on_order(
            ev.verdict_id,
            ev.client_order_id,
            ev.status,
            ev.filled_quantity,  # type: ignore[union-attr]
            ev.quantity,
        )

    async def _rebuild_reservations(self) -> None:
        """After a (re)start or a takeover: the journal's open orders (and terminal ones whose fills are still
        on their way) are reserved again. Approvals of a previous writer that execution has not journaled yet
        can still arrive until they expire, so if a writer was deciding moments ago, hold (account state
        unknown) for one verdict lifetime and read the journal again."""
        engine = self.engine
        assert engine is not None
        async with self.rt.pool.connection() as conn:
            orders = await orders_to_reserve(conn)
        self._adopt(orders)
        age = self._prev_state_age_s  # a writer persists every persist_interval_s while it decides
        recent = age is not None and age < self.cfg.verdict_ttl_s + 2 * self.cfg.persist_interval_s + 1.0
        if recent:  # also on taking the lock back: another writer may have decided meanwhile
            engine.account_known = False
            self._hold_until = time.monotonic() + self.cfg.verdict_ttl_s + 1.0
            self.rt.log.warning(
                "a previous risk writer was deciding moments ago; holding until its verdicts have expired",
                hold_s=self.cfg.verdict_ttl_s + 1.0,
            )
        self.rt.log.info("reservations rebuilt from the journal", orders=len(orders))

    def _adopt(self, orders) -> None:
        engine = self.engine
        assert engine is not None
        for o in orders:
            if o.verdict_id not in engine.reservations:
                price = o.price_limit or engine.book.price_of(o.symbol)
                engine.reservations.reserve(
                    o.verdict_id, o.symbol, o.side, o.quantity, price, self.rt.clock.now()
                )
                engine.reservations.by_verdict[o.verdict_id].applied = o.applied
            engine.on_order(o.verdict_id, o.client_order_id, o.status, o.filled, o.quantity)

    async def _end_hold(self) -> None:
        """The previous writer's verdicts have all expired: the journal now has every order they became."""
        async with self.rt.pool.connection(timeout=3.0) as conn:
            orders = await orders_to_reserve(conn)
        self._adopt(orders)
        self._hold_until = None
        self.engine.account_known = self._account_ok()  # type: ignore[union-attr]
        self.rt.log.info("hold after takeover over; reservations complete", orders=len(orders))

    def _account_ok(self) -> bool:
        """Paper: the book is risk's own. Live: only while the exchange balances are fresh."""
        return not self.live or self._account_fresh

    async def _sync_exchange_account(self) -> None:
        """Live: adopt the exchange balances execution reconciled (`balances`) as the book's cash and positions;
        missing, stale or unreadable balances mean the account is unknown: every verdict is refused."""
        engine = self.engine
        assert engine is not None
        why = ""
        async with self._db_lock:  # no fill is applied between the read and the adoption
            try:
                async with self.rt.pool.connection(timeout=3.0) as conn, conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    account, age, unapplied = await exchange_account(conn)
            except Exception as exc:
                account, age, unapplied, why = (
                    None,
                    float("inf"),
                    0,
                    f"balances unreadable: {type(exc).__name__}",
                )
            if account is None:
                why = why or "no exchange balances journaled yet"
            elif age > (self.cfg.account_stale_after_s or 0):
                why = f"exchange balances {age:.0f} s old (limit {self.cfg.account_stale_after_s:.0f} s)"
            elif unapplied:
                return  # fills on their way to risk: adopt the next snapshot (the age limit still applies)
            if why:
                self._account_fresh = False
                engine.account_known = False
                if why != self._account_why:
                    self.rt.log.error("live account state unknown: refusing every verdict", reason=why)
                    await self.rt.alert(
                        "SEV-2",
                        "risk: exchange account state unknown (HOLD)",
                        why,
                        dedup_key="risk:account-unknown",
                    )
                self._account_why = why
                return
            engine.sync_account(account.balances)  # type: ignore[union-attr]
            self._account_fresh = True
            if self._hold_until is None:
                engine.account_known = True
            if self._account_why:
                self.rt.log.info("live account state known again", equity=str(engine.book.equity()))
            self._account_why = ""

    async def _confirm_reservations(self, all_open: bool = False) -> None:
        """Ask the journal about verdicts past their expiry with no order seen (never journaled: release) and,
        with `all_open`, about every reservation (an order event lost on the way)."""
        engine = self.engine
        assert engine is not None
        now = self.rt.clock.now()
        due = engine.reservations.unconfirmed(now)
        ask = [r.verdict_id for r in engine.reservations.values()] if all_open else due
        if not ask:
            return
        async with self.rt.pool.connection(timeout=3.0) as conn:
            rows = await orders_for(conn, ask)
        self._adopt([rows[v] for v in ask if v in rows])
        for vid in due:
            if vid not in rows:
                engine.reservations.never_journaled(vid)

    # -- signals --------------------------------------------------------------------------------
    async def on_signal(self, sig: Signal, subject: str) -> None:
        if sig.side == "HOLD":
            return
        engine = self.engine
        assert engine is not None
        engine.db_ok = self._db_fresh()
        tick = self.ticks.take(subjects.last(sig.symbol))  # the freshest price of this symbol
        self.rt.clock.observe(sig.ts)
        if tick is not None:
            self.rt.clock.observe(tick.ts)
            engine.on_tick(tick.symbol, tick.last, tick.ts, self.rt.clock.now())
        t0 = time.perf_counter()
        decision = engine.decide(sig, self.rt.clock.now())
        self.m_decision.observe(time.perf_counter() - t0)
        verdict = decision.verdict
        # No lock round trip here: the verdict carries this writer's epoch (risk_epoch), and execution's journal
        # insert of its order refuses an epoch a successor has replaced, in the same statement.
        await self.rt.bus.publish(subjects.verdict(sig.symbol), verdict)
        self.m_signal_to_verdict.observe((verdict.ts - sig.ts).total_seconds())
        if verdict.tick_ts is not None:
            self.m_tick_to_verdict.observe((verdict.ts - verdict.tick_ts).total_seconds())
        outcome = "approved" if verdict.approved else "refused"
        self.m_verdicts.labels(outcome=outcome, reason=verdict.reasons[0] if verdict.reasons else "").inc()
        self.rt.metrics.count(f"verdicts_{outcome}")
        if verdict.approved:
            self.rt.log.info(
                "verdict approved",
                symbol=sig.symbol,
                side=sig.side,
                qty=str(verdict.quantity),
                limit=str(verdict.price_limit),
                verdict_id=verdict.id,
            )
        elif BREAKER_REASONS.intersection(verdict.reasons):
            # the runbook's symptom line ("Skip ... risk budget/circuit breaker active")
            self.rt.log.info(
                f"Skip {sig.side} {sig.symbol}: risk budget/circuit breaker active",
                reasons=verdict.reasons,
                trading_state=verdict.trading_state,
            )
        else:
            self.rt.log.info("verdict refused", symbol=sig.symbol, side=sig.side, reasons=verdict.reasons)
        if decision.events:
            await self._handle(decision.events)

    async def on_trading_control(self, cmd: TradingControlCommand, subject: str) -> None:
        """Operator pause / resume / exit: `services/risk/control.py` decides; an exit's verdict goes out like any."""
        engine = self.engine
        assert engine is not None
        engine.db_ok = self._db_fresh()
        tick = self.ticks.take(subjects.last(cmd.symbol)) if cmd.symbol else None
        if tick is not None:
            engine.on_tick(tick.symbol, tick.last, tick.ts, self.rt.clock.now())
        out = control.apply_control(engine, cmd, self.rt.clock.now())
        if out.verdict is not None:
            await self.rt.bus.publish(subjects.verdict(out.verdict.symbol), out.verdict)
        self.rt.log.warning(
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
        await self.rt.bus.publish(
            subjects.trading_control_result(self.name),
            control.control_result(self.name, cmd, out, engine.sm.state, self.rt.clock.now()),
        )

    # -- events: bus, Postgres, metric, alert ---------------------------------------------------
    async def _handle(self, events: list[Event]) -> None:
        if not events:
            return
        async with self._events_lock:
            try:
                async with self.rt.pool.connection() as conn, conn.transaction():
                    await self.writer_lock.check_on(conn)
                    for ev in events:
                        if isinstance(ev, TradingStateChanged):
                            await conn.execute(
                                "INSERT INTO risk_trading_state_events (event_id, ts, state, previous, reason)"
                                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                                (ev.id, ev.ts, ev.state, ev.previous, ev.reason),
                            )
                        else:
                            tripped = isinstance(ev, BreakerTripped)
                            await conn.execute(
                                "INSERT INTO risk_breaker_events (event_id, ts, breaker, symbol, event, effect,"
                                " reason, until) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                                " ON CONFLICT (event_id) DO NOTHING",
                                (
                                    ev.id,
                                    ev.ts,
                                    ev.breaker,
                                    ev.symbol,
                                    "tripped" if tripped else "cleared",
                                    ev.effect if tripped else None,
                                    ev.reason,
                                    ev.until if tripped else None,
                                ),
                            )
                    await conn.execute(_kv_sql(), ("trading_state", json.dumps(self._trading_state_value())))
                    snap = self.engine.snapshot(self.rt.clock.now())  # type: ignore[union-attr]
                    await conn.execute(_kv_sql(), ("account_state", snap.model_dump_json()))
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
        try:
            if isinstance(ev, TradingStateChanged):
                await rt.bus.publish(subjects.trading_state(), ev)
            elif isinstance(ev, BreakerTripped):
                await rt.bus.publish(subjects.breaker_tripped(), ev)
            else:
                await rt.bus.publish(subjects.breaker_cleared(), ev)
        except Exception as exc:
            rt.log.error("risk event publish failed", kind=type(ev).__name__, error=str(exc))
        if isinstance(ev, TradingStateChanged):
            self.m_state_changes.labels(state=ev.state).inc()
            for s in STATES:
                self.m_state.labels(state=s).set(1 if s == ev.state else 0)
            rt.log.warning("trading state changed", state=ev.state, previous=ev.previous, reason=ev.reason)
            sev = (
                "INFO"
                if ev.state == "ACTIVE"
                else (
                    "SEV-1"
                    if ev.state == "HALTED" and any(b in ev.reason for b in SEV1_BREAKERS)
                    else "SEV-2"
                )
            )
            await rt.alert(
                sev,
                f"trading {ev.state}",
                f"{ev.previous} -> {ev.state}: {ev.reason}",  # type: ignore[arg-type]
                dedup_key=f"risk:trading_state:{ev.state}",
            )
        elif isinstance(ev, BreakerTripped):
            self.m_trips.labels(breaker=ev.breaker).inc()
            rt.log.warning(
                "breaker tripped", breaker=ev.breaker, effect=ev.effect, symbol=ev.symbol, reason=ev.reason
            )
            if ev.breaker == "order_loop":
                await rt.alert(
                    "SEV-1",
                    "order loop: trading HALTED (boucle ordres)",
                    ev.reason,
                    dedup_key="risk:order_loop",
                )
            elif ev.breaker not in QUIET_BREAKERS and ev.reason != "no market data yet":
                sev = "SEV-1" if ev.breaker in SEV1_BREAKERS else "SEV-2"
                await rt.alert(
                    sev,
                    f"breaker {ev.breaker} tripped ({ev.effect})",  # type: ignore[arg-type]
                    f"{ev.symbol or 'all symbols'}: {ev.reason}",
                    dedup_key=f"risk:breaker:{ev.breaker}:{ev.symbol or ''}",
                )
        else:
            rt.log.info("breaker cleared", breaker=ev.breaker, symbol=ev.symbol, reason=ev.reason)

    def _trading_state_value(self) -> dict:
        sm = self.engine.sm  # type: ignore[union-attr]
        return {"state": sm.state, "reason": sm.reason, "since": sm.since.isoformat() if sm.since else None}

    async def _publish_account(self, snap: AccountState) -> None:
        try:
            await self.rt.bus.publish(subjects.account(), snap)
        except Exception as exc:
            self.rt.log.warning("account state publish failed", error=str(exc))

    # -- persistence and database health -------------------------------------------------------
    def _db_failed(self, why: str) -> None:
        self._last_db_ok = 0.0
        if self.engine:
            self.engine.db_ok = False
        self.m_db_ok.set(0)
        self.rt.log.error("database unavailable: refusing every verdict", reason=why)

    def _db_succeeded(self) -> None:
        self._last_db_ok = time.monotonic()
        if self.engine:
            self.engine.db_ok = True
        self.m_db_ok.set(1)

    def _db_fresh(self) -> bool:
        return time.monotonic() - self._last_db_ok < self.cfg.database_stale_after_s

    async def _persist(self, force: bool = False) -> None:
        engine = self.engine
        assert engine is not None
        async with self._db_lock:
            snap = engine.snapshot(self.rt.clock.now())
            try:
                async with self.rt.pool.connection(timeout=3.0) as conn, conn.transaction():
                    await self.writer_lock.check_on(conn)  # never overwrite a successor's state
                    await conn.execute(_kv_sql(), ("account_state", snap.model_dump_json()))
                    await conn.execute(_kv_sql(), ("trading_state", json.dumps(self._trading_state_value())))
            except Exception as exc:
                if force:
                    raise
                self._db_failed(f"{type(exc).__name__}: {exc}")
                return
            self._db_succeeded()
        self.m_equity.set(float(snap.equity_usdt))
        self.m_drawdown.set(snap.drawdown_pct)
        self.m_daily.set(float(snap.daily_realized_usdt))
        self.m_weekly.set(float(snap.weekly_realized_usdt))
        self.m_vol.set(snap.market_volatility_ratio)
        self.m_exposure.set(float(snap.total_exposure_usdt))
        self.m_kill.set(1 if self.latch.blocks else 0)
        for s in STATES:
            self.m_state.labels(state=s).set(1 if s == snap.trading_state else 0)
        for name in DEFAULT_EFFECTS:  # every breaker, so a cleared one goes back to 0
            self.m_active.labels(breaker=name).set(sum(1 for b in snap.breakers if b.breaker == name))

    async def _reconcile_positions(self) -> None:
        """Read execution's positions; SELL sizing uses the smaller of the two views, and a difference that
        persists over two checks raises a SEV-2 (one source is wrong; risk does not guess which)."""
        engine = self.engine
        assert engine is not None
        try:
            async with self.rt.pool.connection(timeout=3.0) as conn:
                rows = await (await conn.execute("SELECT symbol, quantity FROM positions")).fetchall()
        except Exception as exc:
            self.rt.log.warning("execution positions unreadable", error=str(exc))
            return
        external = {r["symbol"]: Decimal(r["quantity"]) for r in rows if Decimal(r["quantity"]) > 0}
        engine.external_positions = external
        mismatches = engine.position_mismatches(external)
        persistent = {s: v for s, v in mismatches.items() if s in self._last_mismatch}
        self._last_mismatch = set(mismatches)
        if persistent:
            detail = "; ".join(f"{s}: risk {a}, execution {b}" for s, (a, b) in sorted(persistent.items()))
            self.rt.log.error("positions disagree with execution", detail=detail)
            await self.rt.alert(
                "SEV-2",
                "risk and execution disagree on positions",
                detail,
                dedup_key="risk:positions-mismatch",
            )

    async def _loop(self) -> None:
        """Re-evaluate the breakers on time alone (staleness, heartbeats, rollovers) and persist."""
        interval = self.cfg.persist_interval_s
        next_persist = time.monotonic()
        next_reconcile = time.monotonic() + RECONCILE_PERIOD_S
        next_account = time.monotonic()
        while True:
            await asyncio.sleep(EVAL_PERIOD_S)
            engine = self.engine
            assert engine is not None
            engine.db_ok = self._db_fresh()
            self.apply_ticks()  # evaluate against the newest prices, not ones up to TICKS_PERIOD_S old
            try:
                await self._handle(engine.evaluate(self.rt.clock.now()))
                if time.monotonic() >= next_persist:
                    next_persist = time.monotonic() + interval
                    await self._persist()
                if self._hold_until is not None and time.monotonic() >= self._hold_until:
                    await self._end_hold()
                if self.live and time.monotonic() >= next_account:
                    next_account = time.monotonic() + ACCOUNT_PERIOD_S
                    await self._sync_exchange_account()
                full = time.monotonic() >= next_reconcile
                await self._confirm_reservations(all_open=full)
                if full:
                    next_reconcile = time.monotonic() + RECONCILE_PERIOD_S
                    await self._reconcile_positions()
            except Exception as exc:  # keep evaluating; the database flag already refuses verdicts
                self.rt.log.error("risk loop iteration failed", error=repr(exc))

    async def stop(self) -> None:
        if self.writer and self.engine is not None and self.engine.account_known:
            try:
                await self._persist()
            except Exception as exc:
                self.rt.log.warning("final state write failed", error=str(exc))
        lock = getattr(self, "writer_lock", None)
        if lock is not None:
            await lock.release()  # a standby takes over at once, not when the session times out

    def health(self) -> tuple[str, str]:
        if not self.writer:
            return ("halted", self.standby_reason) if self._fenced else ("ok", self.standby_reason)
        if self.latch.blocks:
            return "halted", self.latch.reason or ""
        if self.engine is None:
            return "degraded", "starting"
        state = self.engine.sm.state
        if state == "HALTED":
            return "halted", self.engine.sm.reason
        if not self.engine.db_ok:
            return "degraded", "database unavailable"
        if state == "REDUCING":  # risk works as designed; the trading state is reported on its own
            return "ok", f"trading REDUCING: {self.engine.sm.reason}"[:200]
        return "ok", ""

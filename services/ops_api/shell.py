"""ops_api shell: serves the HTTP API with uvicorn inside the service runtime, records the bus into
Postgres, opens incidents, delivers alerts and takes periodic backups."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import uvicorn

from libs.common import subjects
from libs.common.contracts import (
    Alert,
    BreakerCleared,
    BreakerTripped,
    Fill,
    Heartbeat,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    MarketStatus,
    OrderEvent,
    RiskVerdict,
    TradingStateChanged,
    utcnow,
)
from libs.common.kill_switch import (
    UNREADABLE_ALERT_KEY,
    KillSwitchLatch,
    check_authority,
    read_standing,
    refresh_latch,
)
from libs.common.service import Runtime
from libs.common.settings import refuse_placeholder_secrets
from services.ops_api.alerting import Dispatcher
from services.ops_api.app import SHARDED_SERVICES, OpsState, create_app
from services.ops_api.book_metrics import BookMetrics
from services.ops_api.dod_auto import DodAutomation, reports_path
from services.ops_api.events import attach as attach_events
from services.ops_api.incidents import IncidentAction, IncidentBook, Rules
from services.ops_api.recorder import EventRecorder, HeartbeatRecorder

RULES_MAX_AGE_S = 300.0  # replayed events older than this are recorded but do not drive incident rules
FIRST_BACKUP_DELAY_S = 120.0

RECORD_KILL_SWITCH_AFTER_S = 0.02


class OpsApiService:
    name = "ops_api"
    needs_db = True

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.latch = KillSwitchLatch()
        self._degraded = ""

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        refuse_placeholder_secrets(rt.settings)
        cfg = rt.settings.ops_api
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
        port = sock.getsockname()[1]
        self.state = OpsState(rt=rt, latch=self.latch, public_url=f"http://{cfg.host}:{port}")
        self.state.backup_runner = self.run_backup
        self.recorder = HeartbeatRecorder(rt.pool)
        self.events = EventRecorder(rt.pool)
        inc = rt.settings.monitoring.incidents
        self.book = IncidentBook(
            Rules(
                inc.order_loop_max_orders,
                inc.order_loop_window_s,
                Decimal(str(inc.abnormal_loss_usdt)),
                inc.stale_incident_s,
                inc.breaker_stuck_s,
            )
        )
        self.book.load_open(await self.events.open_incidents())
        self.dispatcher = Dispatcher(
            rt.settings.monitoring.alerting,
            rt.pool,
            rt.log,
            rt.metrics,
            on_result=self._on_delivery,
            clock=rt.clock.monotonic,  # dedup windows and rate limits on the runtime's clock
        )
        self.incidents_opened = rt.metrics.counter(
            "incidents_opened_total", "Incidents opened", ["severity", "kind"]
        )
        self.backup_last_ok = rt.metrics.gauge(
            "backup_last_success_timestamp_seconds", "Unix time of the last successful backup"
        )
        self.backups_total = rt.metrics.counter("backups_total", "Backups by outcome", ["outcome"])
        # what the backup-overdue alert compares the last success with (0 while backups are off)
        b = rt.settings.storage.backup
        rt.metrics.gauge("backup_interval_seconds", "storage.backup.interval_s; 0 when backups are off").set(
            b.interval_s if b.enabled else 0
        )
        self.record_errors = rt.metrics.counter(
            "record_errors_total", "Bus events that could not be recorded", ["kind"]
        )

        # the same latch as risk and execution (same order, same authority check): what operators see is
        # the state they apply
        self.latch.release_key = rt.settings.kill_switch.release_key.get_secret_value()
        await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))

        async def reread_latch() -> None:
            await refresh_latch(rt.bus, self.latch, rt.log, rt.clock.now())

        rt.bus.on_reconnect.append(reread_latch)
        try:
            standing = await read_standing(rt.bus)
            if standing is not None and check_authority(standing, self.latch.release_key).allowed:
                await self.events.kill_switch(
                    standing.id,
                    standing.action,
                    standing.reason,
                    standing.actor,
                    standing.flatten,
                    standing.ts,
                )
        except Exception as exc:
            rt.log.warning("standing kill switch not recorded", error=str(exc))

        bus = rt.bus
        await bus.follow(
            "KILL_SWITCH",
            subjects.kill_switch(),
            KillSwitchCommand,
            self._on_kill_switch,
            self._on_unreadable_kill_switch,
        )
        await bus.subscribe(subjects.ALL_KILL_SWITCH_ACKS, KillSwitchAcknowledged, self._on_ack)
        await bus.subscribe(subjects.ALL_KILL_SWITCH_LATCHED, KillSwitchAcknowledged, self._on_latched)
        await bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, self._on_heartbeat)
        await bus.subscribe(subjects.ALL_STATUS, MarketStatus, self._on_market_status)
        await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, self._on_verdict)
        await bus.subscribe(subjects.ALL_ORDERS, OrderEvent, self._on_order)
        await bus.subscribe(subjects.ALL_FILLS, Fill, self._on_fill)
        # Durable consumers: what happens while ops_api is down is recorded when it is back.
        await bus.consume(
            "RISK_EVENTS",
            "ops_api_breaker_tripped",
            subjects.breaker_tripped(),
            BreakerTripped,
            self._on_breaker_tripped,
            fail_closed=False,
        )
        await bus.consume(
            "RISK_EVENTS",
            "ops_api_breaker_cleared",
            subjects.breaker_cleared(),
            BreakerCleared,
            self._on_breaker_cleared,
            fail_closed=False,
        )
        await bus.consume(
            "RISK_EVENTS",
            "ops_api_trading_state",
            subjects.trading_state(),
            TradingStateChanged,
            self._on_trading_state,
            fail_closed=False,
        )
        await bus.consume(
            "ALERTS", "ops_api_alerts", subjects.ALL_ALERTS, Alert, self._on_alert, fail_closed=False
        )
        await attach_events(bus, self.state.hub)  # live updates for the console (GET /events)
        await self.state.controls.attach(bus)  # risk's answers to POST /control

        config = uvicorn.Config(create_app(self.state), log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        rt.spawn(self.server.serve(sockets=[sock]), "http")
        # "started" (what launchers and tests wait for) only once requests are answered
        # the machine's clock by design: a real socket and thread come up (a test clock would never move here)
        ready_by = time.monotonic() + 10.0
        while not self.server.started and time.monotonic() < ready_by:
            await asyncio.sleep(0.01)
        rt.spawn(self._housekeeping(), "housekeeping")
        rt.spawn(
            BookMetrics(rt.metrics).run(rt.pool, self.latch, rt.log), "book-metrics"
        )  # gauges per symbol
        if rt.settings.storage.backup.enabled:
            rt.spawn(self._backup_loop(), "backups")
        dod = rt.settings.monitoring.dod
        if dod.auto_daily:  # the daily DoD report appears without any command
            out = reports_path(dod.reports_dir, rt.settings.storage.artifacts_dir)
            rt.spawn(DodAutomation(rt, out, dod.auto_grace_s, dod.deliver).run(), "dod-daily")
        rt.log.info(
            "ops api listening",
            url=self.state.public_url,
            docs=f"{self.state.public_url}/docs",
            alert_channels=[c.name for c in self.dispatcher.channels],
        )

    # -- incidents ------------------------------------------------------------------------------
    async def _incidents(self, actions: list[IncidentAction]) -> None:
        if not actions:
            return
        opened = await self.events.apply_incidents(actions)
        for a in actions:
            if a.op == "open":
                self.incidents_opened.labels(severity=a.severity, kind=a.kind).inc()
                self.rt.log.warning(
                    "incident opened",
                    severity=a.severity,
                    kind=a.kind,
                    key=a.key,
                    title=a.title,
                    incident_ids=opened,
                )

    def _fresh(self, ts: datetime) -> bool:
        assert self.rt is not None
        return (self.rt.clock.now() - ts).total_seconds() <= RULES_MAX_AGE_S

    # -- handlers -------------------------------------------------------------------------------
    async def _on_unreadable_kill_switch(self, reason: str, seq: int) -> None:
        """Garbage on the subject: risk and execution now treat the switch as engaged; say so, loudly."""
        out = self.latch.on_unreadable(reason, seq, self.rt.clock.now())
        if out.outcome == "unreadable":
            await self.rt.alert(
                "SEV-1",
                "kill switch state unknown: trading halted",
                self.latch.reason or "",
                dedup_key=UNREADABLE_ALERT_KEY,
            )

    async def _on_kill_switch(self, cmd: KillSwitchCommand, seq: int) -> None:
        was_unknown = not self.latch.known
        out = self.latch.on_command(cmd, seq)
        self.state.on_read(cmd.id)
        if not out.applied:  # older, the standing one again, or a release refused for want of authority
            return
        if was_unknown:
            await self._incidents(self.book.on_kill_switch_readable(cmd.action, cmd.actor, cmd.ts))
        # the control path first: the acknowledgements this process is waiting for are read before the
        # bookkeeping (database rows, incidents) starts; a command is never lost meanwhile, it stands on
        # the KILL_SWITCH stream and start-up records it
        await asyncio.sleep(RECORD_KILL_SWITCH_AFTER_S)
        try:
            new = await self.events.kill_switch(
                cmd.id, cmd.action, cmd.reason, cmd.actor, cmd.flatten, cmd.ts
            )
            if new:
                await self._incidents(self.book.on_kill_switch(cmd.action, cmd.reason, cmd.actor, cmd.ts))
        except Exception as exc:
            self.record_errors.labels(kind="kill_switch").inc()
            self.rt.log.error("kill switch event not recorded", error=str(exc))

    async def _on_ack(self, ack: KillSwitchAcknowledged, subject: str) -> None:
        self.state.on_ack(ack)

    async def _on_latched(self, ack: KillSwitchAcknowledged, subject: str) -> None:
        self.state.on_latched(ack)

    async def _on_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        clock = self.rt.clock  # received when, on the clock app.py reads these against
        self.state.last_seen[hb.service] = (clock.monotonic(), hb.status)
        if hb.service == "signal" and hb.model is not None:
            now = clock.monotonic()
            self.state.served_models[hb.instance] = (now, dict(hb.model))
            stale = 10 * self.rt.settings.monitoring.heartbeat_timeout_s  # restarted instances: forget them
            for inst in [i for i, (seen, _) in self.state.served_models.items() if now - seen > stale]:
                del self.state.served_models[inst]
        if hb.service in SHARDED_SERVICES:
            now, seen = clock.monotonic(), self.state.shards.setdefault(hb.service, {})
            if hb.instance not in seen:  # a new instance: forget those silent for an hour (restarts pile up)
                for inst in [i for i, (t, _, _) in seen.items() if now - t > 3600]:
                    del seen[inst]
            seen[hb.instance] = (now, hb.shard, hb.status)
        await self.recorder.record(hb)

    async def _on_market_status(self, ms: MarketStatus, subject: str) -> None:
        await self.events.market_status(ms.symbol, ms.status, ms.age_s, ms.reason, ms.ts)
        await self._incidents(self.book.on_market_status(ms.symbol, ms.status, ms.ts))

    async def _on_verdict(self, v: RiskVerdict, subject: str) -> None:
        if not v.approved:
            self.events.refusal(v.reasons, v.ts)

    async def _on_order(self, ev: OrderEvent, subject: str) -> None:
        await self._incidents(
            self.book.on_order(
                ev.client_order_id, ev.symbol, ev.status, ev.quantity, ev.filled_quantity, ev.ts
            )
        )

    async def _on_fill(self, f: Fill, subject: str) -> None:
        await self._incidents(self.book.on_fill(f.symbol, f.realized_pnl_usdt, f.client_order_id, f.ts))

    async def _on_breaker_tripped(self, b: BreakerTripped, subject: str) -> None:
        await self.events.breaker(b.id, True, b.breaker, b.effect, b.symbol, b.reason, b.ts)
        if self._fresh(b.ts):
            await self._incidents(self.book.on_breaker(True, b.breaker, b.symbol, b.reason, b.ts))

    async def _on_breaker_cleared(self, b: BreakerCleared, subject: str) -> None:
        await self.events.breaker(b.id, False, b.breaker, None, b.symbol, b.reason, b.ts)
        await self._incidents(self.book.on_breaker(False, b.breaker, b.symbol, b.reason, b.ts))

    async def _on_trading_state(self, t: TradingStateChanged, subject: str) -> None:
        await self.events.trading_state(t.id, t.state, t.previous, t.reason, t.ts)

    async def _on_alert(self, alert: Alert, subject: str) -> None:
        outcome = await self.dispatcher.handle(alert)
        if outcome != "duplicate_record" and self._fresh(alert.ts):
            await self._incidents(
                self.book.on_alert(
                    alert.severity, alert.source, alert.title, alert.detail, alert.dedup_key, alert.ts
                )
            )

    async def _on_delivery(self, channel: str, ok: bool, error: str, alert: Alert) -> None:
        await self._incidents(self.book.on_delivery(channel, ok, error, self.rt.clock.now()))
        if not ok and not alert.dedup_key.startswith("ops_api:alerting_down"):
            self._degraded = f"alert delivery failing on {channel}"
            await self.rt.alert(
                "SEV-2",
                f"alerting externe KO: {channel}",
                f"delivery of '{alert.title}' failed: {error}",
                dedup_key=f"ops_api:alerting_down:{channel}",
            )
        elif ok:
            self._degraded = ""

    # -- periodic work --------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await self.events.flush_refusals()
                await self._incidents(self.book.tick(self.rt.clock.now()))
                await self._resolve_reconciled_mismatches()
            except Exception as exc:  # the database may be restarting; try again next round
                self.record_errors.labels(kind="housekeeping").inc()
                self.rt.log.warning("housekeeping failed", error=str(exc))

    async def _resolve_reconciled_mismatches(self) -> None:
        """A journal/exchange mismatch incident is resolved by a later clean reconciliation (execution's table)."""
        if not any(kind == "journal_mismatch" for kind, _ in self.book.open_keys):
            return
        async with self.rt.pool.connection() as conn:
            present = await (
                await conn.execute("SELECT to_regclass('exec_reconciliations') IS NOT NULL AS p")
            ).fetchone()
            if present is None or not present["p"]:
                return
            last = await (
                await conn.execute(
                    "SELECT ts, ok FROM exec_reconciliations ORDER BY ts DESC, id DESC LIMIT 1"
                )
            ).fetchone()
            if last is None or not last["ok"]:
                return
            rows = await (
                await conn.execute(
                    "SELECT key FROM incidents WHERE kind = 'journal_mismatch' AND resolved_at IS NULL AND opened_at < %s",
                    (last["ts"],),
                )
            ).fetchall()
        actions = []
        for r in rows:
            actions += self.book.on_mismatch_resolved(
                r["key"], last["ts"], "clean reconciliation with the exchange"
            )
        await self._incidents(actions)

    async def _last_backup_ok(self) -> datetime | None:
        async with self.rt.pool.connection() as conn:
            row = await (await conn.execute("SELECT max(finished_at) AS t FROM backups WHERE ok")).fetchone()
        return row["t"] if row is not None else None

    async def _backup_loop(self) -> None:
        interval = self.rt.settings.storage.backup.interval_s
        last = await self._last_backup_ok()
        if last is not None:
            self.backup_last_ok.set(last.timestamp())
        # wall time by design: backups are stamped (finished_at, their names) with the machine's time
        due = (last + timedelta(seconds=interval)) if last else utcnow()
        delay = max(FIRST_BACKUP_DELAY_S if last is None else 0.0, (due - utcnow()).total_seconds())
        while True:
            await asyncio.sleep(min(delay, interval))
            if not self.state.backup_lock.locked():
                async with self.state.backup_lock:
                    await self.run_backup("schedule")
            delay = interval

    async def run_backup(self, trigger: str) -> dict:
        from services.ops_api.backup import make_backup

        b = self.rt.settings.storage.backup
        result = await asyncio.to_thread(
            make_backup,
            self.rt.settings.database.url.get_secret_value(),
            Path(b.dir),
            Path(b.models_dir),
            b.retention,
            timeout_s=b.timeout_s,
        )
        async with self.rt.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO backups (started_at, finished_at, ok, path, size_bytes, error, trigger)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    result.started_at,
                    result.finished_at,
                    result.ok,
                    str(result.path or ""),
                    result.size_bytes,
                    result.error,
                    trigger,
                ),
            )
        self.backups_total.labels(outcome="ok" if result.ok else "failed").inc()
        if result.ok:
            self.backup_last_ok.set(result.finished_at.timestamp())
            self.rt.log.info(
                "backup done", path=str(result.path), size_bytes=result.size_bytes, pruned=result.pruned
            )
        else:
            self.rt.log.error("backup failed", error=result.error)
            await self.rt.alert("SEV-3", "backup failed", result.error, dedup_key="ops_api:backup_failed")
        await self._incidents(
            self.book.on_backup(result.ok, result.error or str(result.path), result.finished_at)
        )
        return {
            "ok": result.ok,
            "path": str(result.path) if result.path else None,
            "size_bytes": result.size_bytes,
            "error": result.error,
            "started_at": result.started_at.isoformat(),
            "finished_at": result.finished_at.isoformat(),
            "pruned": result.pruned,
            "trigger": trigger,
        }

    async def stop(self) -> None:
        if hasattr(self, "events"):
            with contextlib.suppress(Exception):
                await self.events.flush_refusals()
        if hasattr(self, "state"):
            self.state.hub.close()  # open event streams end, so the server can stop
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.1)

    def health(self) -> tuple[str, str]:
        return ("degraded", self._degraded) if self._degraded else ("ok", "")

"""risk shell: signals in, verdicts out; persists and acknowledges kill-switch commands."""

from __future__ import annotations

from libs.common import subjects
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, Signal, utcnow
from libs.common.kill_switch import KillSwitchLatch, refresh_latch
from libs.common.service import Runtime
from services.risk.core import decide


class RiskService:
    name = "risk"
    needs_db = True

    def __init__(self) -> None:
        self.latch = KillSwitchLatch()

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        self.verdicts = rt.metrics.counter("verdicts_total", "Verdicts published", ["outcome", "reason"])
        await refresh_latch(rt.bus, self.latch, rt.log)
        await self._reconcile_kill_switch()
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))
        rt.bus.on_reconnect.append(lambda: refresh_latch(rt.bus, self.latch, rt.log))
        await rt.bus.subscribe(subjects.kill_switch(), KillSwitchCommand, self.on_kill_switch, fail_closed=True)
        await rt.bus.subscribe(subjects.ALL_SIGNALS, Signal, self.on_signal)

    async def _reconcile_kill_switch(self) -> None:
        """Postgres audit and the bus must agree; if the audit says engaged and the bus does not, re-assert it."""
        async with self.rt.pool.connection() as conn:
            row = await (await conn.execute(
                "SELECT command_id, action, reason, actor, ts FROM kill_switch_audit ORDER BY id DESC LIMIT 1"
            )).fetchone()
        if row and row["action"] == "engage" and not self.latch.engaged:
            cmd = KillSwitchCommand(ts=row["ts"], action="engage", reason=row["reason"], actor=row["actor"])
            self.rt.log.warning("kill switch engaged in audit but not on the bus; re-asserting")
            await self.rt.bus.publish(subjects.kill_switch(), cmd)
            self.latch.apply(cmd)

    async def on_kill_switch(self, cmd: KillSwitchCommand, subject: str) -> None:
        self.latch.apply(cmd)
        async with self.rt.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO kill_switch_audit (command_id, ts, action, engaged, reason, actor, flatten, recorded_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'risk') ON CONFLICT (command_id) DO NOTHING",
                (cmd.id, cmd.ts, cmd.action, cmd.action == "engage", cmd.reason, cmd.actor, cmd.flatten),
            )
        self.rt.log.warning("kill switch", action=cmd.action, reason=cmd.reason, actor=cmd.actor)
        ack = KillSwitchAcknowledged(ts=utcnow(), command_id=cmd.id, service=self.name,
                                     engaged=cmd.action == "engage")
        await self.rt.bus.publish(subjects.kill_switch_ack(self.name), ack)

    async def on_signal(self, sig: Signal, subject: str) -> None:
        if sig.side == "HOLD":
            return
        cfg = self.rt.settings.risk
        verdict = decide(sig, kill_switch_engaged=self.latch.blocks, equity=cfg.starting_equity_usdt, cfg=cfg,
                         now=utcnow())
        await self.rt.bus.publish(subjects.verdict(sig.symbol), verdict)
        outcome = "approved" if verdict.approved else "refused"
        self.verdicts.labels(outcome=outcome, reason=",".join(verdict.reasons)).inc()
        self.rt.metrics.count(f"verdicts_{outcome}")
        if not verdict.approved:
            self.rt.log.info("verdict refused", symbol=sig.symbol, reasons=verdict.reasons)

    async def stop(self) -> None:
        return None

    def health(self) -> tuple[str, str]:
        return ("halted", self.latch.reason or "") if self.latch.blocks else ("ok", "")

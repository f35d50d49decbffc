"""signal shell: ticks in, signals out."""

from __future__ import annotations

from libs.common import subjects
from libs.common.contracts import Tick, utcnow
from libs.common.service import Runtime
from services.signal.rule import MomentumRule


class SignalService:
    name = "signal"
    needs_db = False

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings.signal
        self.rule = MomentumRule(s.rule_lookback_ticks, s.rule_threshold_bps, s.min_interval_s)
        self.ticks_in = rt.metrics.counter("ticks_received_total", "Ticks received")
        self.signals_out = rt.metrics.counter("signals_published_total", "Signals published", ["side"])
        await rt.bus.subscribe(subjects.ALL_TICKS, Tick, self.on_tick)

    async def on_tick(self, tick: Tick, subject: str) -> None:
        self.ticks_in.inc()
        sig = self.rule.on_tick(tick, utcnow())
        if sig is None:
            return
        await self.rt.bus.publish(subjects.signal(tick.symbol), sig)
        self.signals_out.labels(side=sig.side).inc()
        self.rt.metrics.count("signals")

    async def stop(self) -> None:
        return None

    def health(self) -> tuple[str, str]:
        return "ok", ""

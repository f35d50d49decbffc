"""market_data shell: drives the source at the configured rate and publishes ticks on md.tick.<SYM>."""

from __future__ import annotations

import asyncio
import time

from libs.common import subjects
from libs.common.contracts import utcnow
from libs.common.service import Runtime
from services.market_data.synthetic import SyntheticTicks


class MarketDataService:
    name = "market_data"
    needs_db = False

    def __init__(self) -> None:
        self.rt: Runtime | None = None

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self.source = SyntheticTicks(s.symbols, seed=s.market_data.synthetic.seed)
        self.ticks_out = rt.metrics.counter("ticks_published_total", "Ticks published", ["symbol"])
        rt.spawn(self._run(), "synthetic-source")

    async def _run(self) -> None:
        assert self.rt is not None
        rt = self.rt
        period = 1.0 / rt.settings.market_data.synthetic.ticks_per_s
        symbols = rt.settings.symbols
        next_at = time.monotonic()
        while True:
            now = utcnow()
            for sym in symbols:
                tick = self.source.next(sym, now)
                await rt.bus.publish(subjects.tick(sym), tick)
                self.ticks_out.labels(symbol=subjects.exchange_symbol(sym)).inc()
                rt.metrics.count("ticks")
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        return None

    def health(self) -> tuple[str, str]:
        return "ok", ""

"""market_data shell: picks the source (synthetic | replay | Binance public data), publishes ticks on
md.tick.<SYM>, closed candles on md.candle.<SYM>.<tf>, freshness on md.status.<SYM> and the universe on
md.universe; raises SEV-2 alerts when data goes stale or freezes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from libs.common import subjects
from libs.common.contracts import Heartbeat, MarketStatus, ShardInfo, UniverseChanged
from libs.common.errors import ConfigurationError
from libs.common.service import Runtime
from libs.common.settings import MarketDataSettings
from libs.common.shard import Shard, digest
from services.market_data import cadence
from services.market_data.candles import CandleAggregator
from services.market_data.publisher import Publisher
from services.market_data.sources import ReplaySource, SyntheticSource, coarser_timeframes, load_replay
from services.market_data.staleness import (
    StaleAction,
    StaleAlert,
    StalenessAlerts,
    StalenessTracker,
    StatusChange,
)
from services.market_data.synthetic import SyntheticMarket, synthetic_symbols
from services.market_data.universe import diff_universe

if TYPE_CHECKING:
    from services.market_data.live import SourcePorts


class MarketDataService:
    name = "market_data"
    needs_db = False
    rt: Runtime  # set by start

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.mode = "synthetic"
        self.source: Any = None
        self._replay_done = False
        self.shard = Shard()
        self._shard_digest: tuple[tuple[str, ...], str] = ((), digest(()))

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        md = s.market_data
        # Real-money trading always prices from the exchange; paper mode picks its source.
        self.mode = "live" if s.mode == "live" else s.paper_market_data_mode
        # A sharded instance publishes only the symbols it owns (libs/common/shard.py): every symbol has exactly
        # one publisher; a dead shard's symbols go stale (risk holds them) until it is back.
        self.shard = md.shard.shard()
        self.tracker = StalenessTracker(md.stale_after_s, md.frozen_after_s)
        self.alerts = StalenessAlerts(md.stale_after_s, rt.clock.monotonic(), self.mode)
        m = rt.metrics
        self.m_age = m.gauge("symbol_age_seconds", "Seconds since the last update, per symbol", ["symbol"])
        self.m_stale = m.gauge("symbol_stale", "1 while the symbol is stale", ["symbol"])
        self.m_stale_count = m.gauge("stale_symbols", "Symbols currently stale")
        self.m_universe = m.gauge("universe_symbols", "Symbols in the universe")
        self.m_status = m.counter("status_changes_total", "Fresh/stale transitions", ["status"])
        self.m_errors = m.counter("source_errors_total", "Errors from the market-data source", ["kind"])
        self.m_backoff = m.gauge("backoff_state", "0 ok, 1 backing off, 2 rate limited, 3 banned")
        self.m_backoff_wait = m.gauge("backoff_wait_seconds", "Seconds until the next request is allowed")

        if self.mode == "synthetic":
            symbols = self.shard.select(synthetic_symbols(s.symbols, md.synthetic.symbols_count))
            self._refuse_empty_shard(symbols)
            aggregator = CandleAggregator(md.candle_timeframes)
            market = SyntheticMarket(symbols, md.synthetic.seed, md.synthetic)
            self.source = SyntheticSource(
                market,
                md.synthetic.ticks_per_s,
                max_steps=md.synthetic.max_steps or None,
                slices=md.synthetic.slices_per_step,
                clock=rt.clock.monotonic,
                now=rt.clock.now,
            )
            reason = "config (synthetic)"
        elif self.mode == "replay":
            series = load_replay(md.replay)  # refuses to start (ConfigurationError) naming the key
            symbols = self.shard.select(dict.fromkeys(md.replay.symbols or [md.replay.symbol]))
            self._refuse_empty_shard(symbols)
            usable, unusable = coarser_timeframes(md.candle_timeframes, series.timeframe)
            if unusable:
                rt.log.warning(
                    "replay cannot build these timeframes from its bars",
                    file_timeframe=series.timeframe,
                    unusable=unusable,
                )
            aggregator = CandleAggregator(usable)
            self.source = ReplaySource(
                series,
                symbols,
                speed=md.replay.speed,
                loop=md.replay.loop,
                ticks_per_candle=md.replay.ticks_per_candle,
                spread_bps=md.replay.spread_bps,
                data_clock=md.replay.data_clock,
                clock=rt.clock.monotonic,
                now=rt.clock.now,
            )
            rt.log.info(
                "replay loaded",
                rows=len(series.rows),
                timeframe=series.timeframe,
                normalised_close_times=series.normalised_close_times,
                skipped=len(series.skipped_rows),
                symbols=len(symbols),
                speed=md.replay.speed,
            )
            reason = f"config (replay of {series.symbol} {series.timeframe})"
        else:
            from services.market_data.live import BinanceSource, split_timeframes

            from_klines, from_ticks = split_timeframes(md.candle_timeframes, md.binance.klines)
            aggregator = CandleAggregator(from_ticks)
            rt.log.info("live candles", from_exchange_klines=from_klines, from_ticks=from_ticks)
            self.source = BinanceSource(self._source_ports(rt), md, self.shard.select(s.symbols))
            symbols = self.shard.select(s.symbols) if md.universe.mode == "fixed" else []
            reason = "config (binance)"
        self.pub = Publisher(
            rt.bus,
            rt.metrics,
            aggregator,
            self.tracker,
            last_interval_s=md.last_interval_ms / 1000,
            clock=rt.clock,
        )
        if self.shard.sharded:
            reason += f", shard {self.shard.label()}"
            rt.log.info(
                "market data shard",
                shard=self.shard.label(),
                owned=len(symbols),
                scheme="crc32(exchange symbol) % count",
            )
        if symbols:
            await self.set_universe(symbols, reason)
        rt.log.info(
            "market data source", mode=self.mode, symbols=len(symbols), timeframes=aggregator.timeframes
        )
        rt.spawn(self._status_loop(), "md-status")
        rt.spawn(self._last_loop(md.last_interval_ms / 2000), "md-last")
        rt.spawn(self._run_source(), f"md-source-{self.mode}")

    def _source_ports(self, rt: Runtime) -> SourcePorts:
        """What the Binance source is given: the runtime's clock, logger, alerts and metrics, this service's
        universe and shard, and the signal heartbeats (it replays kline history to a new signal process)."""
        from services.market_data.live import SourcePorts

        async def subscribe_heartbeats(handler: Any) -> Any:
            return await rt.bus.subscribe(subjects.heartbeat("signal"), Heartbeat, handler)

        return SourcePorts(
            clock=rt.clock,
            log=rt.log,
            metrics=rt.metrics,
            alert=rt.alert,
            subscribe_heartbeats=subscribe_heartbeats,
            symbols=lambda: self.symbols,
            set_universe=self.set_universe,
            owned=self.shard.select,
            errors=self.m_errors,
            backoff_state=self.m_backoff,
        )

    def _refuse_empty_shard(self, symbols: list[str]) -> None:
        if not symbols:
            raise ConfigurationError(
                "market_data.shard",
                f"shard {self.shard.label()} owns none of the configured "
                "symbols (crc32 of the exchange symbol % count); use fewer shards",
            )

    async def _run_source(self) -> None:
        assert self.source is not None
        clock = self.rt.clock
        started = clock.monotonic()
        await self.source.run(self.pub)
        elapsed_s = round(clock.monotonic() - started, 3)
        skipped = getattr(self.source, "skipped_steps", 0)
        # the finished source's figures in every later heartbeat's counters (benchmarks read them on the bus)
        totals = self.rt.metrics.totals
        totals["source_ticks"] = self.pub.ticks_published
        totals["source_candles"] = self.pub.candles_published
        totals["source_elapsed_ms"] = round(elapsed_s * 1000)
        totals["source_skipped_steps"] = skipped
        totals["source_finished"] = 1
        if self.mode == "replay":
            self._replay_done = True
            self.rt.log.info(
                "replay finished",
                bars=self.source.bars_done,
                ticks=self.pub.ticks_published,
                candles=self.pub.candles_published,
            )
        else:
            # elapsed_s and skipped_steps say whether the configured rate was reached (benchmarks check it)
            self.rt.log.info(
                "source finished",
                mode=self.mode,
                ticks=self.pub.ticks_published,
                candles=self.pub.candles_published,
                elapsed_s=elapsed_s,
                skipped_steps=skipped,
            )

    async def stop(self) -> None:
        stop = getattr(self.source, "close", None)
        if stop is not None:
            await stop()

    def shard_info(self) -> ShardInfo:
        """This instance's shard for its heartbeat: index, count and the symbols it publishes."""
        symbols = tuple(self.symbols)
        if self._shard_digest[0] != symbols:
            self._shard_digest = (symbols, digest(symbols))
        return ShardInfo(
            index=self.shard.index,
            count=self.shard.count,
            symbols=list(symbols),
            digest=self._shard_digest[1],
        )

    def health(self) -> tuple[str, str]:
        if not hasattr(self, "alerts"):  # not started
            return "ok", "starting"
        fresh, stale = self.tracker.counts()
        state = getattr(self.source, "backoff_state", "ok")
        return self.alerts.health(fresh, stale, self.rt.clock.monotonic(), state, self._replay_done)

    # -- universe ---------------------------------------------------------------------------------
    async def set_universe(self, symbols: list[str], reason: str) -> None:
        """Adopt a new symbol list: track freshness, forget removed symbols, publish and log the change."""
        rt = self.rt
        previous = self.symbols
        if not previous and not self.shard.sharded:  # shards share md.universe: another's list is no base
            try:
                last = await rt.bus.last_value("MD_UNIVERSE", subjects.universe(), UniverseChanged)
                previous = list(last.symbols) if last else []
            except Exception as exc:  # the change is still published, just diffed against nothing
                rt.log.warning("cannot read the previous universe", error=str(exc))
        added, removed = diff_universe(previous, symbols)
        now = rt.clock.monotonic()
        for sym in symbols:
            self.tracker.track(sym, now)
        for sym in set(self.symbols) - set(symbols):
            self.tracker.untrack(sym)
            self.pub.aggregator.drop(sym)
            self.pub.last.forget(sym)
            self.alerts.forget(sym)
            await self._publish_status(StatusChange(sym, "stale", 0.0, "left the universe"))
        first = not self.symbols
        self.symbols = list(symbols)
        self.m_universe.set(len(symbols))
        if first or added or removed:
            msg = UniverseChanged(
                ts=rt.clock.now(), symbols=list(symbols), added=added, removed=removed, reason=reason
            )
            await rt.bus.publish(subjects.universe(), msg)
            rt.log.info(
                "universe changed", size=len(symbols), added=added[:50], removed=removed[:50], reason=reason
            )

    # -- freshness --------------------------------------------------------------------------------
    async def _publish_status(self, ch: StatusChange) -> None:
        msg = MarketStatus(
            ts=self.rt.clock.now(),
            symbol=ch.symbol,
            status=ch.status,
            age_s=round(ch.age_s, 3),
            reason=ch.reason,
        )
        await self.rt.bus.publish(subjects.market_status(ch.symbol), msg)

    async def _last_loop(self, period: float) -> None:
        """md.last: a symbol's held newest tick goes out once its interval has passed."""
        while True:
            await asyncio.sleep(period)
            await self.pub.flush_last()

    async def _status_loop(self) -> None:
        rt = self.rt
        md = rt.settings.market_data
        interval = cadence.status_period_s(md.stale_after_s)
        last_snapshot = float("-inf")
        aggregate_by_time = cadence.closes_on_time(self.mode)
        while True:
            try:
                last_snapshot = await self._status_once(md, last_snapshot, aggregate_by_time)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away or a bug in one pass: log, keep watching (never crash-loop)
                rt.log.warning("status pass failed", error=repr(exc)[:300])
            await asyncio.sleep(interval)

    async def _status_once(
        self, md: MarketDataSettings, last_snapshot: float, aggregate_by_time: bool
    ) -> float:
        mono = self.rt.clock.monotonic()
        for ch in self.tracker.evaluate(mono):
            await self._on_change(ch)
        if mono - last_snapshot >= md.status_interval_s:
            last_snapshot = mono
            for ch in self.tracker.snapshot(mono):
                await self._publish_status(ch)
        self.pub.flush_metrics()
        fresh, stale = self.tracker.counts()
        self.m_stale_count.set(stale)
        for sym in self.tracker.symbols:
            self.m_age.labels(symbol=subjects.exchange_symbol(sym)).set(self.tracker.age(sym, mono))
        stale_now = [sym for sym in self.tracker.symbols if self.tracker.status(sym) == "stale"]
        await self._act(
            self.alerts.on_pass(
                stale_now, mono, has_symbols=bool(self.symbols), replay_done=self._replay_done
            )
        )
        if aggregate_by_time:
            # live ticks carry the exchange's time: give them a moment to arrive before closing a bar
            now_ms = int(self.rt.clock.now().timestamp() * 1000)
            await self.pub.close_due(
                cadence.close_before_ms(now_ms, self.mode), cadence.source_label(self.mode)
            )
        src = self.source
        if src is not None and hasattr(src, "backoff"):
            self.m_backoff_wait.set(src.backoff.wait_s(mono))
        return last_snapshot

    async def _on_change(self, ch: StatusChange) -> None:
        await self._publish_status(ch)
        exch = subjects.exchange_symbol(ch.symbol)
        self.m_stale.labels(symbol=exch).set(1 if ch.status == "stale" else 0)
        self.m_status.labels(status=ch.status).inc()
        await self._act(self.alerts.on_change(ch))

    async def _act(self, actions: list[StaleAction]) -> None:
        """Carry out what the staleness rules decided: raise the alerts, write the lines."""
        rt = self.rt
        for a in actions:
            if isinstance(a, StaleAlert):
                await rt.alert(a.severity, a.title, a.detail, dedup_key=a.dedup_key)
            elif a.level == "info":
                rt.log.info(a.event, **dict(a.fields))
            else:
                rt.log.warning(a.event, **dict(a.fields))

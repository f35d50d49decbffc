"""The publishing half of the market_data shell: ticks and candles onto NATS, freshness and metrics updated.

Every source (synthetic, replay, Binance) hands its prices here, so the subjects, the contracts, the
candle aggregation and the staleness bookkeeping are the same whatever the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from nats import errors as nats_errors
from prometheus_client import Counter

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.clock import WALL, Clock
from libs.common.errors import TemporaryError
from libs.common.metrics import ServiceMetrics
from services.market_data.candles import Bar, CandleAggregator
from services.market_data.encode import candle_json, iso_ts, iso_ts_ms, safe_symbol, tick_json
from services.market_data.last import LastTicks
from services.market_data.staleness import StalenessTracker
from services.market_data.synthetic import Quote


class Publisher:
    def __init__(
        self,
        bus: Bus,
        metrics: ServiceMetrics,
        aggregator: CandleAggregator,
        tracker: StalenessTracker,
        *,
        clock: Clock = WALL,
        monotonic: Callable[[], float] | None = None,
        last_interval_s: float = 0.05,
    ):
        """`clock`: the runtime's (the shell passes `rt.clock`), for the publish time of candles given none and
        for the `md.last` conflation's monotonic seconds (`monotonic` overrides the latter)."""
        self.bus = bus
        self.clock = clock
        self.metrics = metrics
        self.aggregator = aggregator
        self.tracker = tracker
        self.monotonic = monotonic or clock.monotonic
        self._tick_subject: dict[str, str] = {}
        self._last_subject: dict[str, str] = {}
        self.last = LastTicks(last_interval_s)
        self._tick_counter: dict[str, Counter] = {}
        self._tick_pending: dict[str, int] = {}
        self._candle_counter: dict[tuple[str, str], Counter] = {}
        self._ticks = metrics.counter("ticks_published_total", "Ticks published", ["symbol"])
        self._candles = metrics.counter(
            "candles_published_total", "Closed candles published", ["symbol", "timeframe"]
        )
        self._late = metrics.counter("late_ticks_total", "Ticks older than the open candle (not aggregated)")
        self.ticks_published = 0
        self.candles_published = 0
        self._late_seen = 0
        self._dropped = metrics.counter(
            "publish_dropped_total", "Ticks/candles not sent (NATS unavailable)", ["reason"]
        )
        self.dropped = 0
        self._totals = metrics.totals  # heartbeat totals (`ticks`, `candles`)

    def _subject(self, symbol: str) -> str:
        subj = self._tick_subject.get(symbol)
        if subj is None:
            if not safe_symbol(symbol):
                raise ValueError(f"symbol {symbol!r} cannot be published")
            subj = self._tick_subject[symbol] = subjects.tick(symbol)
            self._last_subject[symbol] = subjects.last(symbol)
            self._tick_counter[symbol] = self._ticks.labels(symbol=subjects.exchange_symbol(symbol))
            self._tick_pending[symbol] = 0
        return subj

    async def tick(
        self,
        symbol: str,
        ts_iso: str,
        ts_ms: int,
        bid: str,
        ask: str,
        last: str,
        volume: str,
        source: str,
        *,
        source_ts_ms: int | None = None,
        mono: float | None = None,
        aggregate: bool = True,
    ) -> None:
        """Publish one tick (strings are exact decimals), update freshness and, if asked, the candles."""
        subject = self._subject(symbol)
        payload = tick_json(
            ts_iso,
            symbol,
            bid,
            ask,
            last,
            volume,
            source,
            iso_ts_ms(source_ts_ms) if source_ts_ms is not None else None,
        )
        if not await self._send(subject, payload):
            return
        now = self.monotonic() if mono is None else mono
        newest = self.last.offer(symbol, payload, now)
        if newest is not None:
            await self._send(self._last_subject[symbol], newest)
        self._tick_pending[symbol] += 1
        self.ticks_published += 1
        self._totals["ticks"] += 1
        self.tracker.on_update(symbol, now, last)
        if aggregate:
            closed = self.aggregator.on_tick(
                symbol, source_ts_ms if source_ts_ms is not None else ts_ms, Decimal(last), Decimal(volume)
            )
            for bar in closed:
                await self.candle(bar, source)

    async def _send(self, subject: str, payload: bytes) -> bool:
        """Publish; while NATS is away (outbound buffer full, closed) drop and count instead of dying.

        Ticks and candles are not kept by a stream: consumers rebuild from the next ones, and the
        freshness of a symbol only moves on a tick that actually left.
        """
        try:
            await self.bus.publish_raw(subject, payload)
            return True
        except (nats_errors.Error, TemporaryError, OSError) as exc:
            self.dropped += 1
            self._dropped.labels(reason=type(exc).__name__).inc()
            return False

    async def flush_last(self, now: float | None = None) -> None:
        """Send the held newest ticks whose md.last interval has passed."""
        for symbol, payload in self.last.due(self.monotonic() if now is None else now):
            await self._send(self._last_subject[symbol], payload)

    def flush_metrics(self) -> None:
        """Move the per-symbol tick counts into Prometheus (batched: a labelled inc per tick is costly)."""
        for sym, n in self._tick_pending.items():
            if n:
                self._tick_counter[sym].inc(n)
                self._tick_pending[sym] = 0

    async def quotes(
        self, quotes: Iterable[Quote], ts_iso: str, ts_ms: int, source: str, mono: float
    ) -> None:
        """A whole synthetic step (one quote per symbol): the same as `tick()` for each, with less overhead.
        Every tick of the step goes out first; freshness and candles are updated after."""
        send, on_update, on_tick = self._send, self.tracker.on_update, self.aggregator.on_tick
        pending, totals, offer, last_subject = (
            self._tick_pending,
            self._totals,
            self.last.offer,
            self._last_subject,
        )
        out = []
        for q in quotes:
            symbol = q.symbol
            subject = self._tick_subject.get(symbol) or self._subject(symbol)
            payload = tick_json(ts_iso, symbol, q.bid, q.ask, q.last, q.volume, source)
            if await send(subject, payload):
                out.append(q)
                if offer(symbol, payload, mono) is not None:
                    await send(last_subject[symbol], payload)
        sent = len(out)
        for q in out:
            symbol = q.symbol
            pending[symbol] += 1
            on_update(symbol, mono, q.last)
            closed = on_tick(symbol, ts_ms, Decimal(q.last), Decimal(q.volume))
            for bar in closed:
                await self.candle(bar, source)
        self.ticks_published += sent
        totals["ticks"] += sent

    async def candle(self, bar: Bar, source: str, ts_iso: str | None = None) -> None:
        payload = candle_json(
            ts_iso or iso_ts(self.clock.now()),
            bar.symbol,
            bar.timeframe,
            iso_ts_ms(bar.open_time_ms),
            iso_ts_ms(bar.close_time_ms),
            _s(bar.open),
            _s(bar.high),
            _s(bar.low),
            _s(bar.close),
            _s(bar.volume),
            source,
        )
        if not await self._send(subjects.candle(bar.symbol, bar.timeframe), payload):
            return
        key = (bar.symbol, bar.timeframe)
        c = self._candle_counter.get(key)
        if c is None:
            c = self._candle_counter[key] = self._candles.labels(
                symbol=subjects.exchange_symbol(bar.symbol), timeframe=bar.timeframe
            )
        c.inc()
        self.candles_published += 1
        self._totals["candles"] += 1

    async def bar(self, bar: Bar, source: str, ts_iso: str | None = None) -> None:
        """A closed bar from the source itself (replay, exchange kline), plus the coarser bars it completes."""
        ts_iso = ts_iso or iso_ts(self.clock.now())
        await self.candle(bar, source, ts_iso)
        for coarser in self.aggregator.on_bar(bar):
            await self.candle(coarser, source, ts_iso)

    async def close_due(self, now_ms: int, source: str) -> int:
        """Publish candles whose interval has ended (for sources whose ticks may pause)."""
        bars = self.aggregator.close_due(now_ms)
        ts_iso = iso_ts(self.clock.now()) if bars else ""
        for bar in bars:
            await self.candle(bar, source, ts_iso)
        if self.aggregator.late_updates != self._late_seen:
            self._late.inc(self.aggregator.late_updates - self._late_seen)
            self._late_seen = self.aggregator.late_updates
        return len(bars)


def _s(d: Decimal) -> str:
    return format(d, "f")

"""Binance public market data through ccxt: websocket tickers, REST polling as the fallback, universe scan.

The loop never dies on an exchange error: every failure is mapped (ccxt_adapter), counted by kind,
and fed to the back-off policy; symbols simply go stale (risk holds them) until data comes back.

- Markets are loaded once and reloaded every `markets_refresh_s`; only Binance status TRADING spot
  pairs are used.
- Universe: the configured `symbols` (kept if TRADING), or the top-N scan (`universe.py`) every
  `universe.refresh_s`. An empty scan keeps the previous universe and raises a SEV-2 alert.
- Prices: `watch_tickers(..., name=ticker)` (the 24h ticker stream: bid, ask, last, volume). If the
  socket errors, is refused or stays silent for `ws_silence_s`, ticks come from `fetch_tickers` every
  `poll_interval_s`; the socket is retried every `ws_retry_s`.
- Errors: temporary -> jittered back-off; 429/DDoS -> Retry-After; 418 -> no request of any kind
  until the ban ends, and a SEV-2 alert. `errors_before_alert` consecutive errors -> SEV-2 alert.
- Klines (`binance.klines: true`, the `candle_timeframes` Binance serves): the exchange's own candles, from
  the kline stream or REST, never rebuilt from ticker snapshots (whose volume is a rolling 24h figure).
  At first contact with a symbol the last `BACKFILL_BARS` closed klines are fetched (`fetch_ohlcv`) and
  published in order, so a 1h model does not wait a day to warm up; they are sent again when a new signal
  process appears (its heartbeat carries a new instance id), since candles are not kept by a stream. A gap
  (a bar missing between two published ones) is counted, logged, and filled from REST with the exchange's
  bars; what cannot be filled stays a gap (consumers see the jump and warm up again), never a made-up bar.

The source is a port: it gets what it needs from its service (`SourcePorts`: clock, logger, alerts, metrics,
the bus subscription, the universe it publishes) and never holds the service itself. ccxt's answers become
typed values in `ccxt_adapter` (`Ticker`, `Kline`); the back-off is `backoff.BackoffPolicy` (tenacity).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from libs.common.clock import Clock
from libs.common.contracts import Heartbeat, Severity
from libs.common.errors import BnmlError, TemporaryError
from libs.common.logging import Logger
from libs.common.metrics import ServiceMetrics
from libs.common.settings.market_data import MarketDataSettings
from services.market_data.backoff import STATE_CODE, BackoffPolicy, RetryDecision, backoff_kind
from services.market_data.candles import timeframe_ms
from services.market_data.ccxt_adapter import (
    Kline,
    call,
    error_kind,
    klines,
    make_exchange,
    map_error,
    ticker_stamp,
    tickers,
)
from services.market_data.encode import iso_ts
from services.market_data.universe import market_tradable, select_universe

# Kline intervals Binance serves (others, like 5s, are aggregated from ticks).
BACKFILL_BARS = 100  # closed klines published at first contact: covers a model's warm-up (25 bars) with room
BINANCE_INTERVALS = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
)


def split_timeframes(timeframes: list[str], klines: bool) -> tuple[list[str], list[str]]:
    """(from exchange klines, aggregated from ticks)."""
    if not klines:
        return [], list(timeframes)
    return [tf for tf in timeframes if tf in BINANCE_INTERVALS], [
        tf for tf in timeframes if tf not in BINANCE_INTERVALS
    ]


class Sink(Protocol):
    """Where the source's ticks and bars go (`publisher.Publisher`)."""

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
    ) -> None: ...

    async def bar(self, bar: Any, source: str) -> None: ...


class Alerter(Protocol):
    async def __call__(
        self, severity: Severity, title: str, detail: str = "", dedup_key: str = ""
    ) -> None: ...


@dataclass(frozen=True)
class SourcePorts:
    """What the Binance source is given by its shell (never the service itself)."""

    clock: Clock
    log: Logger
    metrics: ServiceMetrics
    alert: Alerter
    subscribe_heartbeats: Callable[[Callable[[Heartbeat, str], Awaitable[None]]], Awaitable[Any]]
    symbols: Callable[[], list[str]]  # the universe being published now
    set_universe: Callable[[list[str], str], Awaitable[None]]
    owned: Callable[[list[str]], list[str]]  # the symbols this (sharded) instance publishes
    errors: Counter  # source_errors_total{kind}
    backoff_state: Gauge  # 0 ok, 1 backing off, 2 rate limited, 3 banned


class BinanceSource:
    name = "binance"

    def __init__(self, ports: SourcePorts, md: MarketDataSettings, config_symbols: list[str]):
        self.ports = ports
        self.log = ports.log
        self.md = md
        self.cfg = md.binance
        self.ucfg = md.universe
        self.config_symbols = list(config_symbols)
        self.monotonic = ports.clock.monotonic
        self.backoff = BackoffPolicy(
            self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self.cfg.ban_default_s
        )
        self._retrying = self.backoff.retrying(self._record_error, self._report_error, self._sleep_gated)
        self.exchange: Any = None
        self.markets: dict[str, Any] = {}
        self._markets_at = float("-inf")
        self._universe_at = float("-inf")
        self._ws_retry_at = 0.0
        self._ws_failures = 0
        self._base_volume: dict[str, Decimal] = {}
        self._ws_seen: dict[str, tuple[Any, ...]] = {}
        self.kline_tfs, _ = split_timeframes(md.candle_timeframes, self.cfg.klines)
        self._kline_published: dict[tuple[str, str], int] = {}
        self._kline_poll_at: dict[tuple[str, str], float] = {}
        self._backfilled: set[tuple[str, str]] = set()  # (symbol, tf) whose history has been sent
        self._signal_instance: str | None = None
        self.transport = "none"  # websocket | rest | none
        self._errors_alerted = False
        self._rng = random.Random()
        m = ports.metrics
        self.m_transport = m.gauge("source_websocket", "1 while prices come from the websocket, 0 from REST")
        self.m_requests = m.counter("exchange_requests_total", "Requests sent to the exchange", ["what"])
        self.m_gaps = m.counter(
            "kline_gaps_total", "Missing klines between two published ones", ["timeframe"]
        )
        self.m_backfill = m.counter(
            "klines_backfilled_total", "Closed klines published from a backfill", ["timeframe"]
        )

    @property
    def backoff_state(self) -> str:
        return self.backoff.state

    @property
    def symbols(self) -> list[str]:
        return self.ports.symbols()

    def _now_ms(self) -> int:
        return int(self.ports.clock.now().timestamp() * 1000)

    async def close(self) -> None:
        if self.exchange is not None:
            try:
                await self.exchange.close()
            except Exception:  # closing anyway
                pass

    # -- main loop --------------------------------------------------------------------------------
    async def run(self, pub: Sink) -> None:
        self.exchange = make_exchange(self.cfg)
        if self.kline_tfs:
            await self.ports.subscribe_heartbeats(self._on_signal_heartbeat)
        while (
            True
        ):  # each pass runs under tenacity: a failure is mapped, counted, waited out, and the pass rerun
            await self._retrying(self._pass, pub)

    async def _pass(self, pub: Sink) -> None:
        await self._gate()
        await self._refresh_markets_if_due()
        await self._refresh_universe_if_due()
        if not self.symbols:
            await asyncio.sleep(min(self.cfg.poll_interval_s, 1.0))
            return
        await self._backfill_due(pub)
        if self.cfg.use_websocket and self.monotonic() >= self._ws_retry_at:
            await self._stream(pub)
        else:
            await self._poll(pub)
            await asyncio.sleep(self.cfg.poll_interval_s)

    async def _sleep_gated(self, seconds: float) -> None:
        """tenacity's sleep between passes: the gate (which waits out whatever the policy holds)."""
        await self._gate()

    async def _gate(self) -> None:
        """No request leaves while the back-off (or a ban) says wait."""
        while True:
            wait = self.backoff.wait_s(self.monotonic())
            self.ports.backoff_state.set(STATE_CODE[self.backoff.state] if wait > 0 else 0)
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 1.0))

    def _ok(self) -> None:
        if self.backoff.consecutive_errors:
            self.log.info("exchange answering again", after_errors=self.backoff.consecutive_errors)
        self.backoff.on_success(self.monotonic())
        self._errors_alerted = False
        self.ports.backoff_state.set(0)

    def _mapped(self, exc: BaseException) -> BnmlError:
        if isinstance(exc, BnmlError):
            return exc
        return map_error(exc, getattr(self.exchange, "last_response_headers", None), self._now_ms())

    def _record_error(self, exc: BaseException) -> RetryDecision:
        """A pass failed: count it by kind and put it on the back-off policy (tenacity waits its decision)."""
        err = self._mapped(exc)
        self.ports.errors.labels(kind=error_kind(err)).inc()
        d = self.backoff.on_error(backoff_kind(err), self.monotonic(), getattr(err, "retry_after_s", None))
        self.ports.backoff_state.set(STATE_CODE[d.state])
        return d

    async def _report_error(self, exc: BaseException, d: RetryDecision) -> None:
        err = self._mapped(exc)
        kind = error_kind(err)
        self.log.warning(
            "exchange error; backing off",
            kind=kind,
            error=str(err)[:300],
            wait_s=round(d.wait_s, 2),
            state=d.state,
            consecutive=d.consecutive_errors,
        )
        if d.new_ban:
            await self.ports.alert(
                "SEV-2",
                "Binance banned this IP (HTTP 418)",
                f"no request to Binance for {d.wait_s:.0f}s; market data goes stale meanwhile",
                dedup_key="market_data:binance_ban",
            )
        if d.consecutive_errors >= self.cfg.errors_before_alert and not self._errors_alerted:
            self._errors_alerted = True
            await self.ports.alert(
                "SEV-2",
                "repeated exchange errors",
                f"{d.consecutive_errors} consecutive errors from Binance, last {kind}: {str(err)[:200]}",
                dedup_key="market_data:exchange_errors",
            )

    # -- markets and universe ----------------------------------------------------------------------
    async def _refresh_markets_if_due(self) -> None:
        now = self.monotonic()
        if now - self._markets_at < self.cfg.markets_refresh_s and self.markets:
            return
        ex = self.exchange
        self.m_requests.labels(what="markets").inc()
        markets = await call(ex, lambda: ex.load_markets(reload=bool(self.markets)), self._now_ms)
        self._ok()
        self.markets = markets
        self._markets_at = now
        if self.ucfg.mode == "fixed":
            self._universe_at = float("-inf")  # re-check the configured symbols against the new statuses
        tradable = sum(1 for mk in markets.values() if market_tradable(mk, self.ucfg.quote))
        self.log.info("markets loaded", markets=len(markets), tradable_quote=tradable)

    async def _refresh_universe_if_due(self) -> None:
        now = self.monotonic()
        if now - self._universe_at < self.ucfg.refresh_s and self.symbols:
            return
        if self.ucfg.mode == "fixed":
            keep: list[str] = []
            dropped: list[str] = []
            for s in self.config_symbols:
                mk = self.markets.get(s)
                (keep if mk is not None and market_tradable(mk, mk.get("quote")) else dropped).append(s)
            if dropped:
                self.log.warning("configured symbols not TRADING on Binance; left out", symbols=dropped)
            new, reason = keep, "config (binance, TRADING only)"
        else:
            ex = self.exchange
            self.m_requests.labels(what="tickers_all").inc()
            all_tickers = await call(ex, lambda: ex.fetch_tickers(), self._now_ms)
            self._ok()
            res = select_universe(
                self.markets,
                all_tickers,
                top_n=self.ucfg.top_n,
                quote=self.ucfg.quote,
                min_quote_volume=self.ucfg.min_quote_volume,
                exclude=self.ucfg.exclude,
            )
            new, reason = res.symbols, f"scan: top {self.ucfg.top_n} {self.ucfg.quote} by 24h quote volume"
            self.log.info("universe scan", considered=res.considered, kept=len(new), dropped=len(res.dropped))
        new = self.ports.owned(new)  # a sharded market_data publishes only the symbols it owns
        self._universe_at = now
        if not new:
            await self.ports.alert(
                "SEV-2",
                "empty market scan",
                f"universe {self.ucfg.mode} found no tradable symbol; keeping {len(self.symbols)} symbol(s)",
                dedup_key="market_data:empty_scan",
            )
            # retry the scan sooner than the schedule
            self._universe_at = now - self.ucfg.refresh_s + max(self.cfg.poll_interval_s * 5, 10.0)
            return
        if new != self.symbols:
            for s in set(self.symbols) - set(new):
                self._base_volume.pop(s, None)
            await self.ports.set_universe(new, reason)
            self._ws_retry_at = 0.0  # (re)subscribe with the new list

    def _refresh_due(self) -> bool:
        now = self.monotonic()
        return (
            now - self._markets_at >= self.cfg.markets_refresh_s
            or now - self._universe_at >= self.ucfg.refresh_s
        )

    # -- prices -----------------------------------------------------------------------------------
    async def _stream(self, pub: Sink) -> None:
        """Ticks from the websocket until it fails, goes silent, or a refresh is due."""
        ex = self.exchange
        symbols = list(self.symbols)
        self.m_requests.labels(what="ws_subscribe").inc()
        klines_task = asyncio.create_task(self._klines_ws(pub, symbols)) if self.kline_tfs else None
        try:
            while not self._refresh_due() and symbols == self.symbols:
                if klines_task is not None and klines_task.done():
                    klines_task.result()  # re-raise its failure here
                await asyncio.wait_for(ex.watch_tickers(symbols, {"name": "ticker"}), self.cfg.ws_silence_s)
                # One call returns the first update(s); others that arrived meanwhile are only in the cache.
                cache = ex.tickers or {}
                fresh = {}
                for s in symbols:
                    tk = cache.get(s)
                    if tk is None:
                        continue
                    key = ticker_stamp(tk)
                    if self._ws_seen.get(s) != key:
                        self._ws_seen[s] = key
                        fresh[s] = tk
                if self.transport != "websocket":
                    self.transport = "websocket"
                    self.m_transport.set(1)
                    self.log.info("prices from the websocket", symbols=len(symbols))
                self._ws_failures = 0
                self._ok()
                await self._publish_tickers(pub, fresh)
        except TimeoutError:
            await self._ws_down(f"websocket silent for {self.cfg.ws_silence_s:g}s")
            await self._poll(pub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = map_error(exc, None, self._now_ms())
            if error_kind(err) in ("banned", "rate_limited"):
                raise err from exc
            self.ports.errors.labels(kind="websocket").inc()
            await self._ws_down(f"websocket failed: {str(err)[:200]}")
            await self._poll(pub)
        finally:
            if klines_task is not None:
                if not klines_task.done():
                    klines_task.cancel()
                elif not klines_task.cancelled():
                    klines_task.exception()  # retrieved: the ticker stream's failure already tells the story

    async def _klines_ws(self, pub: Sink, symbols: list[str]) -> None:
        ex = self.exchange
        pairs = [[s, tf] for s in symbols for tf in self.kline_tfs]
        while True:
            await ex.watch_ohlcv_for_symbols(pairs)
            cache = ex.ohlcvs or {}
            for s in symbols:
                for tf in self.kline_tfs:
                    rows = (cache.get(s) or {}).get(tf)
                    if rows:
                        await self._publish_klines(pub, s, tf, list(rows), closed_before=rows[-1][0])

    async def _publish_klines(
        self, pub: Sink, symbol: str, tf: str, rows: list[Any], closed_before: int
    ) -> None:
        """Publish, once each, the bars that opened before `closed_before` (the newest bar is still open)."""
        key = (symbol, tf)
        last = self._kline_published.get(key)
        tf_ms = timeframe_ms(tf)
        for k in klines(rows):
            t0 = k.open_time_ms
            if t0 >= closed_before or (last is not None and t0 <= last):
                continue
            if k.ohlcv is None:
                self.ports.errors.labels(kind="malformed").inc()
                continue
            if last is None and t0 < closed_before - tf_ms:
                # first contact without a backfill: only the bar that just closed
                continue
            if last is not None and t0 > last + tf_ms:
                last = await self._fill_gap(pub, symbol, tf, last, t0)
                if t0 <= last:
                    continue
            await pub.bar(k.bar(symbol, tf, tf_ms), "binance")
            self._kline_published[key] = last = t0

    # -- kline history ------------------------------------------------------------------------------
    async def _on_signal_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        """A signal process we have not seen yet (also the first one: it may have started after our backfill)
        has none of the history: send the backfill again (consumers drop the bars they already hold)."""
        if hb.instance != self._signal_instance:
            self._backfilled.clear()
            self.log.info("new signal process: klines backfill again", instance=hb.instance)
        self._signal_instance = hb.instance

    async def _backfill_due(self, pub: Sink) -> None:
        for s in list(self.symbols):
            for tf in self.kline_tfs:
                if (s, tf) not in self._backfilled:
                    await self._backfill(pub, s, tf)

    async def _backfill(self, pub: Sink, symbol: str, tf: str) -> None:
        """Publish the last BACKFILL_BARS closed klines of (symbol, tf), oldest first (repeats are skipped by
        consumers: a bar opened at or before the last one they hold is dropped)."""
        ex = self.exchange
        await self._gate()
        self.m_requests.labels(what="klines_backfill").inc()
        rows = await call(ex, lambda: ex.fetch_ohlcv(symbol, tf, limit=BACKFILL_BARS + 1), self._now_ms)
        self._ok()
        tf_ms = timeframe_ms(tf)
        current_open = self._now_ms() // tf_ms * tf_ms
        closed = [k for k in klines(rows) if k.open_time_ms < current_open][-BACKFILL_BARS:]
        key = (symbol, tf)
        if key in self._kline_published:
            # a replay for a new consumer: the whole window again, then carry on from where we were
            published = self._kline_published.pop(key)
            n = await self._publish_rows(pub, symbol, tf, closed, None)
            self._kline_published[key] = max(published, self._kline_published.get(key, published))
        else:
            n = await self._publish_rows(pub, symbol, tf, closed, None)
        self._backfilled.add(key)
        self.m_backfill.labels(timeframe=tf).inc(n)
        self.log.info("klines backfilled", symbol=symbol, timeframe=tf, bars=n)

    async def _fill_gap(self, pub: Sink, symbol: str, tf: str, last: int, upto: int) -> int:
        """Bars are missing between `last` and `upto` (open times): ask the exchange for them. Returns the
        open time of the last bar now published."""
        tf_ms = timeframe_ms(tf)
        missing = (upto - last) // tf_ms - 1
        self.m_gaps.labels(timeframe=tf).inc(missing)
        self.log.warning(
            "kline gap: filling from REST",
            symbol=symbol,
            timeframe=tf,
            missing_bars=missing,
            after=iso_ts(datetime.fromtimestamp(last / 1000, UTC)),
        )
        ex = self.exchange
        try:
            self.m_requests.labels(what="klines_gap").inc()
            rows = await call(
                ex,
                lambda: ex.fetch_ohlcv(symbol, tf, since=last + tf_ms, limit=min(missing, 1000)),
                self._now_ms,
            )
        except Exception as exc:  # the gap stays a gap: consumers see the jump
            self.log.warning("kline gap not filled", symbol=symbol, timeframe=tf, error=str(exc)[:200])
            return last
        fill = [k for k in klines(rows) if last < k.open_time_ms < upto]
        await self._publish_rows(pub, symbol, tf, fill, last)
        return self._kline_published.get((symbol, tf), last)

    async def _publish_rows(
        self, pub: Sink, symbol: str, tf: str, rows: list[Kline], last: int | None
    ) -> int:
        """Publish closed klines in order, each once, skipping (and counting) malformed ones. Returns how many."""
        key, tf_ms, n = (symbol, tf), timeframe_ms(tf), 0
        for k in rows:
            t0 = k.open_time_ms
            if last is not None and t0 <= last:
                continue
            if k.ohlcv is None:
                self.ports.errors.labels(kind="malformed").inc()
                continue
            await pub.bar(k.bar(symbol, tf, tf_ms), "binance")
            self._kline_published[key] = last = t0
            n += 1
        return n

    async def _poll_klines(self, pub: Sink) -> None:
        """REST fallback for exchange klines: one request per symbol and timeframe after each bar closes."""
        ex = self.exchange
        now = self.monotonic()
        for s in list(self.symbols):
            for tf in self.kline_tfs:
                key = (s, tf)
                if now < self._kline_poll_at.get(key, 0.0):
                    continue
                await self._gate()
                self.m_requests.labels(what="klines").inc()
                rows = await call(ex, partial(ex.fetch_ohlcv, s, tf, limit=3), self._now_ms)
                tf_ms = timeframe_ms(tf)
                wall = self._now_ms()
                current_open = wall // tf_ms * tf_ms
                await self._publish_klines(pub, s, tf, rows or [], closed_before=current_open)
                self._kline_poll_at[key] = now + max(
                    self.cfg.poll_interval_s, (current_open + tf_ms - wall) / 1000 + 0.2
                )

    async def _ws_down(self, why: str) -> None:
        self._ws_failures += 1
        wait = min(self.cfg.ws_retry_s * 2 ** min(self._ws_failures - 1, 4), 300.0) * (
            0.8 + 0.4 * self._rng.random()
        )
        self._ws_retry_at = self.monotonic() + wait
        self.transport = "rest"
        self.m_transport.set(0)
        self.log.warning("websocket down; polling REST", reason=why, retry_ws_in_s=round(wait, 1))
        try:
            await self.exchange.close_ws_clients()
        except Exception:  # the clients are being torn down anyway
            pass

    async def _poll(self, pub: Sink) -> None:
        await self._gate()
        ex = self.exchange
        symbols = list(self.symbols)
        self.m_requests.labels(what="tickers").inc()
        answer = await call(ex, lambda: ex.fetch_tickers(symbols), self._now_ms)
        if self.transport != "rest":
            self.transport = "rest"
            self.m_transport.set(0)
        published = await self._publish_tickers(pub, answer)
        if answer and not published:
            raise TemporaryError(f"malformed answer: {len(answer)} ticker(s), none with valid bid/ask/last")
        self._ok()
        if self.kline_tfs:
            await self._poll_klines(pub)

    async def _publish_tickers(self, pub: Sink, raw: dict[str, Any]) -> int:
        now = self.ports.clock.now()
        ts_iso, ts_ms, mono = iso_ts(now), int(now.timestamp() * 1000), self.monotonic()
        valid, malformed = tickers(raw, self.symbols)
        if malformed:
            self.ports.errors.labels(kind="malformed").inc(malformed)
        for t in valid:
            volume = "0"
            if t.base_volume is not None:
                prev = self._base_volume.get(t.symbol)
                if prev is not None and t.base_volume > prev:
                    volume = format(t.base_volume - prev, "f")
                self._base_volume[t.symbol] = t.base_volume
            await pub.tick(
                t.symbol,
                ts_iso,
                ts_ms,
                t.bid,
                t.ask,
                t.last,
                volume,
                "binance",
                source_ts_ms=t.source_ts_ms,
                mono=mono,
            )
        return len(valid)

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
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from libs.common import subjects
from libs.common.contracts import Heartbeat
from libs.common.errors import BnmlError, TemporaryError
from services.market_data.backoff import STATE_CODE, BackoffPolicy
from services.market_data.candles import Bar, timeframe_ms
from services.market_data.ccxt_adapter import call, error_kind, make_exchange, map_error
from services.market_data.encode import iso_ts
from services.market_data.publisher import Publisher
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def split_timeframes(timeframes: list[str], klines: bool) -> tuple[list[str], list[str]]:
    """(from exchange klines, aggregated from ticks)."""
    if not klines:
        return [], list(timeframes)
    return [tf for tf in timeframes if tf in BINANCE_INTERVALS], [
        tf for tf in timeframes if tf not in BINANCE_INTERVALS
    ]


def _dec_str(x: Any) -> str | None:
    """A ccxt number (float or str) as an exact positive decimal string, or None if it is not one."""
    if x is None or isinstance(x, bool):
        return None
    try:
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(str(x))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d < 0:
        return None
    return format(d.normalize(), "f") if d != 0 else "0"


class BinanceSource:
    name = "binance"

    def __init__(self, svc: Any, md: Any, config_symbols: list[str], *, monotonic=time.monotonic):
        self.svc = svc
        self.md = md
        self.cfg = md.binance
        self.ucfg = md.universe
        self.config_symbols = list(config_symbols)
        self.monotonic = monotonic
        self.backoff = BackoffPolicy(
            self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self.cfg.ban_default_s
        )
        self.exchange: Any = None
        self.markets: dict[str, Any] = {}
        self._markets_at = float("-inf")
        self._universe_at = float("-inf")
        self._ws_retry_at = 0.0
        self._ws_failures = 0
        self._base_volume: dict[str, Decimal] = {}
        self._ws_seen: dict[str, tuple] = {}
        self.kline_tfs, _ = split_timeframes(md.candle_timeframes, self.cfg.klines)
        self._kline_published: dict[tuple[str, str], int] = {}
        self._kline_poll_at: dict[tuple[str, str], float] = {}
        self._backfilled: set[tuple[str, str]] = set()  # (symbol, tf) whose history has been sent
        self._signal_instance: str | None = None
        self.transport = "none"  # websocket | rest | none
        self._errors_alerted = False
        self._rng = random.Random()

    @property
    def backoff_state(self) -> str:
        return self.backoff.state

    @property
    def symbols(self) -> list[str]:
        return self.svc.symbols

    async def close(self) -> None:
        if self.exchange is not None:
            try:
                await self.exchange.close()
            except Exception:  # closing anyway
                pass

    # -- main loop --------------------------------------------------------------------------------
    async def run(self, pub: Publisher) -> None:
        rt = self.svc.rt
        m = rt.metrics
        self.m_transport = m.gauge("source_websocket", "1 while prices come from the websocket, 0 from REST")
        self.m_requests = m.counter("exchange_requests_total", "Requests sent to the exchange", ["what"])
        self.m_gaps = m.counter(
            "kline_gaps_total", "Missing klines between two published ones", ["timeframe"]
        )
        self.m_backfill = m.counter(
            "klines_backfilled_total", "Closed klines published from a backfill", ["timeframe"]
        )
        self.exchange = make_exchange(self.cfg)
        if self.kline_tfs:
            await rt.bus.subscribe(subjects.heartbeat("signal"), Heartbeat, self._on_signal_heartbeat)
        while True:
            try:
                await self._gate()
                await self._refresh_markets_if_due()
                await self._refresh_universe_if_due()
                if not self.symbols:
                    await asyncio.sleep(min(self.cfg.poll_interval_s, 1.0))
                    continue
                await self._backfill_due(pub)
                if self.cfg.use_websocket and self.monotonic() >= self._ws_retry_at:
                    await self._stream(pub)
                else:
                    await self._poll(pub)
                    await asyncio.sleep(self.cfg.poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never crash-loop: map, count, back off, carry on
                await self._on_error(exc)

    async def _gate(self) -> None:
        """No request leaves while the back-off (or a ban) says wait."""
        while True:
            wait = self.backoff.wait_s(self.monotonic())
            self.svc.m_backoff.set(STATE_CODE[self.backoff.state] if wait > 0 else 0)
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 1.0))

    def _ok(self) -> None:
        if self.backoff.consecutive_errors:
            self.svc.rt.log.info("exchange answering again", after_errors=self.backoff.consecutive_errors)
        self.backoff.on_success(self.monotonic())
        self._errors_alerted = False
        self.svc.m_backoff.set(0)

    async def _on_error(self, exc: BaseException) -> None:
        rt = self.svc.rt
        err = (
            exc
            if isinstance(exc, BnmlError)
            else map_error(exc, getattr(self.exchange, "last_response_headers", None), _now_ms())
        )
        kind = error_kind(err)
        self.svc.m_errors.labels(kind=kind).inc()
        policy_kind = kind if kind in ("banned", "rate_limited") else "temporary"
        retry_after = getattr(err, "retry_after_s", None)
        d = self.backoff.on_error(policy_kind, self.monotonic(), retry_after)  # type: ignore[arg-type]
        self.svc.m_backoff.set(STATE_CODE[d.state])
        rt.log.warning(
            "exchange error; backing off",
            kind=kind,
            error=str(err)[:300],
            wait_s=round(d.wait_s, 2),
            state=d.state,
            consecutive=d.consecutive_errors,
        )
        if d.new_ban:
            await rt.alert(
                "SEV-2",
                "Binance banned this IP (HTTP 418)",
                f"no request to Binance for {d.wait_s:.0f}s; market data goes stale meanwhile",
                dedup_key="market_data:binance_ban",
            )
        if d.consecutive_errors >= self.cfg.errors_before_alert and not self._errors_alerted:
            self._errors_alerted = True
            await rt.alert(
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
        markets = await call(ex, lambda: ex.load_markets(reload=bool(self.markets)), _now_ms)
        self._ok()
        self.markets = markets
        self._markets_at = now
        if self.ucfg.mode == "fixed":
            self._universe_at = float("-inf")  # re-check the configured symbols against the new statuses
        tradable = sum(1 for mk in markets.values() if market_tradable(mk, self.ucfg.quote))
        self.svc.rt.log.info("markets loaded", markets=len(markets), tradable_quote=tradable)

    async def _refresh_universe_if_due(self) -> None:
        now = self.monotonic()
        if now - self._universe_at < self.ucfg.refresh_s and self.symbols:
            return
        rt = self.svc.rt
        if self.ucfg.mode == "fixed":
            keep, dropped = [], []
            for s in self.config_symbols:
                mk = self.markets.get(s)
                (keep if mk is not None and market_tradable(mk, mk.get("quote")) else dropped).append(s)
            if dropped:
                rt.log.warning("configured symbols not TRADING on Binance; left out", symbols=dropped)
            new, reason = keep, "config (binance, TRADING only)"
        else:
            ex = self.exchange
            self.m_requests.labels(what="tickers_all").inc()
            tickers = await call(ex, lambda: ex.fetch_tickers(), _now_ms)
            self._ok()
            res = select_universe(
                self.markets,
                tickers,
                top_n=self.ucfg.top_n,
                quote=self.ucfg.quote,
                min_quote_volume=self.ucfg.min_quote_volume,
                exclude=self.ucfg.exclude,
            )
            new, reason = res.symbols, f"scan: top {self.ucfg.top_n} {self.ucfg.quote} by 24h quote volume"
            rt.log.info("universe scan", considered=res.considered, kept=len(new), dropped=len(res.dropped))
        new = self.svc.shard.select(new)  # a sharded market_data publishes only the symbols it owns
        self._universe_at = now
        if not new:
            await rt.alert(
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
            await self.svc.set_universe(new, reason)
            self._ws_retry_at = 0.0  # (re)subscribe with the new list

    def _refresh_due(self) -> bool:
        now = self.monotonic()
        return (
            now - self._markets_at >= self.cfg.markets_refresh_s
            or now - self._universe_at >= self.ucfg.refresh_s
        )

    # -- prices -----------------------------------------------------------------------------------
    async def _stream(self, pub: Publisher) -> None:
        """Ticks from the websocket until it fails, goes silent, or a refresh is due."""
        ex = self.exchange
        symbols = list(self.symbols)
        self.m_requests.labels(what="ws_subscribe").inc()
        klines = asyncio.create_task(self._klines_ws(pub, symbols)) if self.kline_tfs else None
        try:
            while not self._refresh_due() and symbols == self.symbols:
                if klines is not None and klines.done():
                    klines.result()  # re-raise its failure here
                await asyncio.wait_for(ex.watch_tickers(symbols, {"name": "ticker"}), self.cfg.ws_silence_s)
                # One call returns the first update(s); others that arrived meanwhile are only in the cache.
                cache = ex.tickers or {}
                tickers = {}
                for s in symbols:
                    tk = cache.get(s)
                    if tk is None:
                        continue
                    key = (
                        tk.get("timestamp"),
                        tk.get("bid"),
                        tk.get("ask"),
                        tk.get("last"),
                        tk.get("baseVolume"),
                    )
                    if self._ws_seen.get(s) != key:
                        self._ws_seen[s] = key
                        tickers[s] = tk
                if self.transport != "websocket":
                    self.transport = "websocket"
                    self.m_transport.set(1)
                    self.svc.rt.log.info("prices from the websocket", symbols=len(symbols))
                self._ws_failures = 0
                self._ok()
                await self._publish_tickers(pub, tickers)
        except TimeoutError:
            await self._ws_down(f"websocket silent for {self.cfg.ws_silence_s:g}s")
            await self._poll(pub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = map_error(exc, None, _now_ms())
            if error_kind(err) in ("banned", "rate_limited"):
                raise err from exc
            self.svc.m_errors.labels(kind="websocket").inc()
            await self._ws_down(f"websocket failed: {str(err)[:200]}")
            await self._poll(pub)
        finally:
            if klines is not None:
                if not klines.done():
                    klines.cancel()
                elif not klines.cancelled():
                    klines.exception()  # retrieved: the ticker stream's failure already tells the story

    async def _klines_ws(self, pub: Publisher, symbols: list[str]) -> None:
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
        self, pub: Publisher, symbol: str, tf: str, rows: list, closed_before: int
    ) -> None:
        """Publish, once each, the bars that opened before `closed_before` (the newest bar is still open)."""
        key = (symbol, tf)
        last = self._kline_published.get(key)
        tf_ms = timeframe_ms(tf)
        for r in rows:
            if not isinstance(r, list | tuple) or len(r) < 6 or r[0] is None:
                continue
            t0 = int(r[0])
            if t0 >= closed_before or (last is not None and t0 <= last):
                continue
            o, h, low, c, v = (_dec_str(x) for x in r[1:6])
            if (
                None in (o, h, low, c, v)
                or Decimal(low) <= 0
                or not (
                    Decimal(low) <= min(Decimal(o), Decimal(c)) and Decimal(h) >= max(Decimal(o), Decimal(c))
                )
            ):
                self.svc.m_errors.labels(kind="malformed").inc()
                continue
            if last is None and t0 < closed_before - tf_ms:
                # first contact without a backfill: only the bar that just closed
                continue
            if last is not None and t0 > last + tf_ms:
                last = await self._fill_gap(pub, symbol, tf, last, t0)
                if t0 <= last:
                    continue
            await pub.bar(
                Bar(
                    symbol,
                    tf,
                    t0,
                    t0 + tf_ms - 1,
                    Decimal(o),
                    Decimal(h),
                    Decimal(low),
                    Decimal(c),
                    Decimal(v),
                ),
                "binance",
            )
            self._kline_published[key] = last = t0

    # -- kline history ------------------------------------------------------------------------------
    async def _on_signal_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        """A signal process we have not seen yet (also the first one: it may have started after our backfill)
        has none of the history: send the backfill again (consumers drop the bars they already hold)."""
        if hb.instance != self._signal_instance:
            self._backfilled.clear()
            self.svc.rt.log.info("new signal process: klines backfill again", instance=hb.instance)
        self._signal_instance = hb.instance

    async def _backfill_due(self, pub: Publisher) -> None:
        for s in list(self.symbols):
            for tf in self.kline_tfs:
                if (s, tf) not in self._backfilled:
                    await self._backfill(pub, s, tf)

    async def _backfill(self, pub: Publisher, symbol: str, tf: str) -> None:
        """Publish the last BACKFILL_BARS closed klines of (symbol, tf), oldest first (repeats are skipped by
        consumers: a bar opened at or before the last one they hold is dropped)."""
        ex = self.exchange
        await self._gate()
        self.m_requests.labels(what="klines_backfill").inc()
        rows = await call(ex, lambda: ex.fetch_ohlcv(symbol, tf, limit=BACKFILL_BARS + 1), _now_ms)
        self._ok()
        tf_ms = timeframe_ms(tf)
        current_open = _now_ms() // tf_ms * tf_ms
        closed = [
            r
            for r in rows or []
            if isinstance(r, list | tuple) and len(r) >= 6 and r[0] is not None and int(r[0]) < current_open
        ][-BACKFILL_BARS:]
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
        self.svc.rt.log.info("klines backfilled", symbol=symbol, timeframe=tf, bars=n)

    async def _fill_gap(self, pub: Publisher, symbol: str, tf: str, last: int, upto: int) -> int:
        """Bars are missing between `last` and `upto` (open times): ask the exchange for them. Returns the
        open time of the last bar now published."""
        tf_ms = timeframe_ms(tf)
        missing = (upto - last) // tf_ms - 1
        self.m_gaps.labels(timeframe=tf).inc(missing)
        self.svc.rt.log.warning(
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
                ex, lambda: ex.fetch_ohlcv(symbol, tf, since=last + tf_ms, limit=min(missing, 1000)), _now_ms
            )
        except Exception as exc:  # the gap stays a gap: consumers see the jump
            self.svc.rt.log.warning("kline gap not filled", symbol=symbol, timeframe=tf, error=str(exc)[:200])
            return last
        fill = [
            r
            for r in rows or []
            if isinstance(r, list | tuple) and len(r) >= 6 and r[0] is not None and last < int(r[0]) < upto
        ]
        await self._publish_rows(pub, symbol, tf, fill, last)
        return self._kline_published.get((symbol, tf), last)

    async def _publish_rows(self, pub: Publisher, symbol: str, tf: str, rows: list, last: int | None) -> int:
        """Publish closed kline rows in order, each once, skipping malformed ones. Returns how many."""
        key, tf_ms, n = (symbol, tf), timeframe_ms(tf), 0
        for r in rows:
            t0 = int(r[0])
            if last is not None and t0 <= last:
                continue
            bar = self._kline_bar(symbol, tf, t0, tf_ms, r)
            if bar is None:
                continue
            await pub.bar(bar, "binance")
            self._kline_published[key] = last = t0
            n += 1
        return n

    def _kline_bar(self, symbol: str, tf: str, t0: int, tf_ms: int, r) -> Bar | None:
        o, h, low, c, v = (_dec_str(x) for x in r[1:6])
        if (
            None in (o, h, low, c, v)
            or Decimal(low) <= 0
            or not (Decimal(low) <= min(Decimal(o), Decimal(c)) and Decimal(h) >= max(Decimal(o), Decimal(c)))
        ):
            self.svc.m_errors.labels(kind="malformed").inc()
            return None
        return Bar(
            symbol, tf, t0, t0 + tf_ms - 1, Decimal(o), Decimal(h), Decimal(low), Decimal(c), Decimal(v)
        )

    async def _poll_klines(self, pub: Publisher) -> None:
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
                rows = await call(ex, lambda s=s, tf=tf: ex.fetch_ohlcv(s, tf, limit=3), _now_ms)
                tf_ms = timeframe_ms(tf)
                wall = _now_ms()
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
        self.svc.rt.log.warning("websocket down; polling REST", reason=why, retry_ws_in_s=round(wait, 1))
        try:
            await self.exchange.close_ws_clients()
        except Exception:  # the clients are being torn down anyway
            pass

    async def _poll(self, pub: Publisher) -> None:
        await self._gate()
        ex = self.exchange
        symbols = list(self.symbols)
        self.m_requests.labels(what="tickers").inc()
        tickers = await call(ex, lambda: ex.fetch_tickers(symbols), _now_ms)
        if self.transport != "rest":
            self.transport = "rest"
            self.m_transport.set(0)
        published = await self._publish_tickers(pub, tickers)
        if tickers and not published:
            raise TemporaryError(f"malformed answer: {len(tickers)} ticker(s), none with valid bid/ask/last")
        self._ok()
        if self.kline_tfs:
            await self._poll_klines(pub)

    async def _publish_tickers(self, pub: Publisher, tickers: dict[str, Any]) -> int:
        now = datetime.now(UTC)
        ts_iso, ts_ms, mono = iso_ts(now), int(now.timestamp() * 1000), self.monotonic()
        wanted = set(self.symbols)
        n = 0
        for sym, t in (tickers or {}).items():
            if sym not in wanted or not isinstance(t, dict):
                continue
            bid, ask, last = _dec_str(t.get("bid")), _dec_str(t.get("ask")), _dec_str(t.get("last"))
            if (
                bid is None
                or ask is None
                or last is None
                or Decimal(bid) <= 0
                or Decimal(last) <= 0
                or Decimal(bid) > Decimal(ask)
            ):
                self.svc.m_errors.labels(kind="malformed").inc()
                continue
            volume = "0"
            base_vol = _dec_str(t.get("baseVolume"))
            if base_vol is not None:
                bv = Decimal(base_vol)
                prev = self._base_volume.get(sym)
                if prev is not None and bv > prev:
                    volume = format(bv - prev, "f")
                self._base_volume[sym] = bv
            src_ms = t.get("timestamp")
            await pub.tick(
                sym,
                ts_iso,
                ts_ms,
                bid,
                ask,
                last,
                volume,
                "binance",
                source_ts_ms=int(src_ms) if isinstance(src_ms, int | float) and src_ms > 0 else None,
                mono=mono,
            )
            n += 1
        return n

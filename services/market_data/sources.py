"""The offline sources as async loops: synthetic ticks at a rate, and replayed OHLCV files at a speed.

Both drive a `Publisher`; all the decisions (the synthetic model, the replay path, candle bucketing)
live in the pure cores (`synthetic.py`, `replay.py`, `candles.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from libs.common.clock import WALL
from libs.common.errors import ConfigurationError
from libs.common.settings.market_data import ReplaySettings
from services.market_data.candles import timeframe_ms
from services.market_data.encode import iso_ts
from services.market_data.publisher import Publisher
from services.market_data.replay import OhlcvSeries, ReplayClock, ReplayFileError, bar_path, load_ohlcv
from services.market_data.synthetic import SyntheticMarket

ROOT = Path(__file__).resolve().parents[2]
MAX_CATCH_UP_S = 1.0


def _wall_now() -> datetime:
    return WALL.now()


class SyntheticSource:
    """Steps the synthetic market `ticks_per_s` times a second (one tick per symbol per step).

    With `slices` > 1 a step's ticks go out in that many slices spread evenly over the step's period, each
    stamped when it is sent: with a thousand symbols a real feed's ticks do not all arrive in one burst,
    and a burst would make the last symbol's tick wait for the other 999 before it leaves."""

    name = "synthetic"

    def __init__(
        self,
        market: SyntheticMarket,
        ticks_per_s: float,
        *,
        max_steps: int | None = None,
        slices: int = 1,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _wall_now,
    ):
        """`clock`: monotonic seconds that pace the steps; `now`: the ticks' event time (the shell passes its
        runtime clock's `now`)."""
        self.market = market
        self.period = 1.0 / ticks_per_s
        self.max_steps = max_steps
        self.slices = max(1, slices)
        self.clock = clock
        self.now = now
        self.skipped_steps = 0
        self.done = asyncio.Event()

    async def run(self, pub: Publisher) -> None:
        t0, k, n = self.clock(), 0, self.slices
        while self.max_steps is None or k < self.max_steps:
            quotes = self.market.step()
            size = max(1, -(-len(quotes) // n))  # ceil: n slices at most
            for i in range(0, len(quotes), size):
                if i:
                    await asyncio.sleep(max(0.0, t0 + (k + i / len(quotes)) * self.period - self.clock()))
                made = self.now()  # the ticks' event time: made now, published right after
                ts_iso, ts_ms = iso_ts(made), int(made.timestamp() * 1000)
                await pub.quotes(quotes[i : i + size], ts_iso, ts_ms, "synthetic", self.clock())
            k += 1
            due = t0 + k * self.period
            now = self.clock()
            if now - due > MAX_CATCH_UP_S:
                # we cannot keep up: drop the backlog instead of bursting stale steps (counted)
                behind = int((now - due) / self.period)
                self.skipped_steps += behind
                t0 += behind * self.period
                due = t0 + k * self.period
            await asyncio.sleep(max(0.0, due - now))
        self.done.set()


def replay_path(cfg: ReplaySettings) -> Path:
    p = Path(cfg.path)
    return p if p.is_absolute() else (ROOT / p)


def load_replay(cfg: ReplaySettings) -> OhlcvSeries:
    """Load the configured file, or refuse to start naming the key."""
    path = replay_path(cfg)
    if not path.is_file():
        raise ConfigurationError("market_data.replay.path", f"file not found: {path}")
    try:
        return load_ohlcv(path, cfg.symbol, cfg.format, cfg.timeframe)
    except ReplayFileError as exc:
        raise ConfigurationError("market_data.replay.path", str(exc)) from None
    except ValueError as exc:
        raise ConfigurationError("market_data.replay.timeframe", str(exc)) from None


class ReplaySource:
    """Publishes each bar's derived ticks, then the bar itself, for every mapped symbol, at `speed`."""

    name = "replay"

    def __init__(
        self,
        series: OhlcvSeries,
        symbols: list[str],
        *,
        speed: float = 0.0,
        loop: bool = False,
        ticks_per_candle: int = 4,
        spread_bps: float = 1.0,
        max_bars: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        data_clock: bool = False,
        now: Callable[[], datetime] = _wall_now,
    ):
        """`clock`: monotonic seconds that pace the replay; `now`: the publish time stamped on ticks and bars
        unless `data_clock` (then the data's own time)."""
        self.series = series
        self.symbols = symbols
        self.speed = speed
        self.loop = loop
        self.ticks_per_candle = ticks_per_candle
        self.spread_bps = Decimal(str(spread_bps))
        self.max_bars = max_bars
        self.clock = clock
        self.now = now
        self.data_clock = (
            data_clock  # stamp ticks and candles with the data's time (services on the data clock)
        )
        self.bars_done = 0
        self.finished = asyncio.Event()

    async def run(self, pub: Publisher) -> None:
        s = self.series
        n = len(s.rows) if self.max_bars is None else min(self.max_bars, len(s.rows))
        while True:
            clock = ReplayClock(s.rows[0][0], self.speed)
            start = self.clock()
            for i in range(n):
                bar = s.bar(i)
                path = bar_path(bar, self.ticks_per_candle, self.spread_bps, s.price_places)
                for pt in path:
                    wait = start + clock.due_s(pt.ts_ms) - self.clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    now_wall = datetime.fromtimestamp(pt.ts_ms / 1000, UTC) if self.data_clock else self.now()
                    ts_iso, ts_ms, mono = iso_ts(now_wall), int(now_wall.timestamp() * 1000), self.clock()
                    for sym in self.symbols:
                        await pub.tick(
                            sym,
                            ts_iso,
                            ts_ms,
                            pt.bid,
                            pt.ask,
                            pt.last,
                            pt.volume,
                            "replay",
                            source_ts_ms=pt.ts_ms,
                            mono=mono,
                            aggregate=False,
                        )
                ts_iso = iso_ts(
                    datetime.fromtimestamp(path[-1].ts_ms / 1000, UTC) if self.data_clock else self.now()
                )
                for sym in self.symbols:
                    await pub.bar(s.bar(i, sym), "replay", ts_iso)
                self.bars_done += 1
                await asyncio.sleep(0)  # let the NATS flusher and the status loop run
            if not self.loop:
                break
        self.finished.set()


def coarser_timeframes(timeframes: list[str], base_tf: str) -> tuple[list[str], list[str]]:
    """(usable, unusable): configured timeframes a replay of `base_tf` bars can build."""
    base = timeframe_ms(base_tf)
    usable = [tf for tf in timeframes if timeframe_ms(tf) > base and timeframe_ms(tf) % base == 0]
    return usable, [tf for tf in timeframes if tf not in usable and tf != base_tf]

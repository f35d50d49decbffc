"""Candle aggregation (pure core): ticks or finer bars in, closed bars out, on UTC-aligned boundaries.

Bars are aligned on multiples of the timeframe since the Unix epoch (as Binance aligns klines). A bar
closes when an update arrives in a later bucket or when `close_due(now)` sees its end has passed.
An interval with no update at all produces no bar: a gap stays visible as a gap (a flat, zero-volume
bar would hide a dead feed from whoever computes features on it). Updates older than the open bar
(late ticks) are counted and ignored; a closed bar is never re-opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from libs.common.settings.market_data import TIMEFRAME_RE

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@lru_cache(maxsize=256)
def timeframe_ms(tf: str) -> int:
    """`1s` -> 1000, `5m` -> 300000. Raises ValueError on anything else."""
    if not TIMEFRAME_RE.match(tf):
        raise ValueError(f"{tf!r} is not a timeframe like 1s, 5s, 1m, 1h, 1d")
    return int(tf[:-1]) * _UNIT_MS[tf[-1]]


def timeframe_of_ms(ms: int) -> str:
    """The shortest name for a bar length in ms (3600000 -> `1h`)."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    raise ValueError(f"{ms} ms is not a whole number of seconds")


def bucket_start(ts_ms: int, tf_ms: int) -> int:
    if tf_ms == _UNIT_MS["w"]:
        # Binance weeks start on Monday; the epoch was a Thursday.
        offset = 4 * _UNIT_MS["d"]  # 1970-01-05, the first Monday
        return (ts_ms - offset) // tf_ms * tf_ms + offset
    return ts_ms // tf_ms * tf_ms


@dataclass
class Bar:
    """One OHLCV bar; `close_time_ms` is the last millisecond inside it (Binance convention)."""

    symbol: str
    timeframe: str
    open_time_ms: int
    close_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    updates: int = 1
    partial: bool = False  # began after its open (first bar after start): never published


@dataclass
class _Series:
    tf: str
    tf_ms: int
    bars: dict[str, Bar] = field(default_factory=dict)
    closed_through: dict[str, int] = field(default_factory=dict)  # open time of the last closed bar

    def pop(self, symbol: str) -> Bar:
        bar = self.bars.pop(symbol)
        self.closed_through[symbol] = bar.open_time_ms
        return bar


class CandleAggregator:
    """Builds closed bars for several timeframes from ticks (`on_tick`) or from finer bars (`on_bar`)."""

    def __init__(self, timeframes: list[str]):
        self.series = [_Series(tf, timeframe_ms(tf)) for tf in dict.fromkeys(timeframes)]
        self.late_updates = 0
        self.partial_dropped = 0
        self._seen: set[tuple[str, str]] = set()

    @property
    def timeframes(self) -> list[str]:
        return [s.tf for s in self.series]

    def on_tick(self, symbol: str, ts_ms: int, price: Decimal, volume: Decimal = Decimal(0)) -> list[Bar]:
        """A trade/last price at `ts_ms`; returns the bars this update closed."""
        out: list[Bar] = []
        for s in self.series:
            bar = s.bars.get(symbol)
            if bar is not None and bar.open_time_ms <= ts_ms < bar.close_time_ms:
                # hot path: inside the open bar (and not its last millisecond)
                if price > bar.high:
                    bar.high = price
                elif price < bar.low:
                    bar.low = price
                bar.close = price
                bar.volume += volume
                bar.updates += 1
                continue
            closed = self._update_series(s, symbol, ts_ms, ts_ms, price, price, price, price, volume)
            if closed:
                out += closed
        return out

    def on_bar(self, bar: Bar) -> list[Bar]:
        """A finer closed bar (e.g. a replayed 1h kline feeding 4h/1d); only coarser series take it."""
        bar_ms = timeframe_ms(bar.timeframe)
        out: list[Bar] = []
        for s in self.series:
            if s.tf_ms <= bar_ms or s.tf_ms % bar_ms:
                continue
            out += self._update_series(
                s,
                bar.symbol,
                bar.open_time_ms,
                bar.close_time_ms,
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
            )
        return out

    def _update(
        self,
        symbol: str,
        ts_ms: int,
        end_ms: int,
        o: Decimal,
        h: Decimal,
        low: Decimal,
        c: Decimal,
        v: Decimal,
    ) -> list[Bar]:
        out: list[Bar] = []
        for s in self.series:
            out += self._update_series(s, symbol, ts_ms, end_ms, o, h, low, c, v)
        return out

    def _update_series(
        self,
        s: _Series,
        symbol: str,
        ts_ms: int,
        end_ms: int,
        o: Decimal,
        h: Decimal,
        low: Decimal,
        c: Decimal,
        v: Decimal,
    ) -> list[Bar]:
        start = bucket_start(ts_ms, s.tf_ms)
        bar = s.bars.get(symbol)
        closed: list[Bar] = []
        if start <= s.closed_through.get(symbol, -1) or (bar is not None and start < bar.open_time_ms):
            self.late_updates += 1  # its bar is already closed: never re-opened
            return closed
        if bar is not None and start > bar.open_time_ms:
            closed.append(s.pop(symbol))
            bar = None
        if bar is None:
            key = (s.tf, symbol)
            # The first bar of a symbol only has the updates since we started: it is incomplete.
            partial = key not in self._seen and ts_ms != start
            self._seen.add(key)
            s.bars[symbol] = Bar(symbol, s.tf, start, start + s.tf_ms - 1, o, h, low, c, v, partial=partial)
        else:
            if h > bar.high:
                bar.high = h
            if low < bar.low:
                bar.low = low
            bar.close = c
            bar.volume += v
            bar.updates += 1
        # A finer bar that ends exactly on this series' boundary completes the bar now.
        current = s.bars[symbol]
        if end_ms >= current.close_time_ms:
            closed.append(s.pop(symbol))
        return self._complete(closed)

    def _complete(self, bars: list[Bar]) -> list[Bar]:
        out = [b for b in bars if not b.partial]
        self.partial_dropped += len(bars) - len(out)
        return out

    def close_due(self, now_ms: int) -> list[Bar]:
        """Bars whose interval has ended by `now_ms` (for sources whose updates may pause)."""
        out: list[Bar] = []
        for s in self.series:
            done = [sym for sym, bar in s.bars.items() if bar.close_time_ms < now_ms]
            for sym in done:
                out.append(s.pop(sym))
        return self._complete(out)

    def drop(self, symbol: str) -> None:
        """Forget a symbol's open bars (it left the universe)."""
        for s in self.series:
            s.bars.pop(symbol, None)
            s.closed_through.pop(symbol, None)
            self._seen.discard((s.tf, symbol))

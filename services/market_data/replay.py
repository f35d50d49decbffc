"""Replay of recorded OHLCV (pure core): file loaders, and the deterministic tick path through each bar.

Formats:
- ccxt JSON: `[[ts_ms, open, high, low, close, volume], ...]` (numbers read as exact decimals);
- Binance kline CSV with a header (`open_time,open,high,low,close,volume,close_time[,...]`); a row
  whose close_time is not `open_time + timeframe - 1` (BTCUSDT-1h.csv has one) is normalised to the
  Binance convention and counted;
- Parquet (polars) with columns `open_time` or `timestamp` (epoch ms or datetime), open, high, low,
  close, volume.

The ticks derived from a bar follow a fixed path: open, then the nearer-to-open extreme first
(bullish bar: low then high; bearish: high then low), then close, spaced evenly inside the bar; the
bar's volume is split evenly among them. A replay spread (bps, rounded outward to the file's price
precision) gives a bid and an ask around each path price. Same file, same settings: same ticks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from libs.common.ohlcv import COLUMNS, OhlcvError, read_raw
from services.market_data.candles import Bar, timeframe_ms, timeframe_of_ms


class ReplayFileError(OhlcvError):
    """The file cannot be replayed (unreadable, wrong shape, no valid rows)."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.name, self.reason, self.row = "", message, None


@dataclass
class OhlcvSeries:
    symbol: str
    timeframe: str
    rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]]
    price_places: int
    normalised_close_times: int = 0
    skipped_rows: list[str] = field(default_factory=list)

    @property
    def tf_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    def bar(self, i: int, symbol: str | None = None) -> Bar:
        t, o, h, low, c, v = self.rows[i]
        return Bar(symbol or self.symbol, self.timeframe, t, t + self.tf_ms - 1, o, h, low, c, v)


def _dec(x: object) -> Decimal:
    if isinstance(x, float):
        x = repr(x)
    return Decimal(str(x))


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def load_ohlcv(path: str | Path, symbol: str, fmt: str = "auto", timeframe: str = "") -> OhlcvSeries:
    """Read a file into validated, time-ordered bars. Raises ReplayFileError with a readable reason.

    The file is read by the one OHLCV reader (`libs.common.ohlcv`); replay's documented repair is to skip
    invalid rows and report each one (a replay keeps running on the rest), where training and the
    backtest refuse the file."""
    path = Path(path)
    try:
        raw = read_raw(path, fmt)
    except OhlcvError as exc:
        raise ReplayFileError(str(exc)) from None
    rows = [
        (int(t), o, h, low, c, v, None if ct is None else int(ct))
        for t, o, h, low, c, v, ct in raw.select(*COLUMNS, "close_time").iter_rows()
    ]
    return _build(rows, symbol, timeframe, path.name)


def _build(rows_in: Iterable[Sequence[Any]], symbol: str, timeframe: str, name: str) -> OhlcvSeries:
    raw = sorted(rows_in, key=lambda r: r[0])
    if not raw:
        raise ReplayFileError(f"{name}: no rows")
    if timeframe:
        tf_ms = timeframe_ms(timeframe)
    else:
        diffs = Counter(b[0] - a[0] for a, b in zip(raw, raw[1:], strict=False) if b[0] > a[0])
        if not diffs:
            raise ReplayFileError(
                f"{name}: cannot infer the timeframe from one row; set market_data.replay.timeframe"
            )
        tf_ms = diffs.most_common(1)[0][0]
        timeframe = timeframe_of_ms(tf_ms)
    rows, skipped, normalised, places, last_t = [], [], 0, 0, None
    for t, *vals, close_time in raw:
        try:
            o, h, low, c, v = (_dec(x) for x in vals)
        except (InvalidOperation, TypeError, ValueError):
            skipped.append(f"{t}: not numbers")
            continue
        if not all(x.is_finite() for x in (o, h, low, c, v)) or min(o, h, low, c) <= 0 or v < 0:
            skipped.append(f"{t}: non-positive or non-finite value")
            continue
        if not (low <= min(o, c) and h >= max(o, c)):
            skipped.append(f"{t}: low/high do not bound open/close")
            continue
        if t == last_t:
            skipped.append(f"{t}: duplicate open time")
            continue
        if close_time is not None and close_time != t + tf_ms - 1:
            normalised += 1
        places = max(places, *(_places(x) for x in (o, h, low, c)))
        rows.append((t, o, h, low, c, v))
        last_t = t
    if not rows:
        raise ReplayFileError(f"{name}: no valid rows ({len(skipped)} rejected)")
    return OhlcvSeries(symbol, timeframe, rows, places, normalised, skipped)


@dataclass(frozen=True)
class PathTick:
    """One derived tick: historical time, bid/ask/last as exact strings, and the volume share."""

    ts_ms: int
    bid: str
    ask: str
    last: str
    volume: str
    last_d: Decimal


def bar_path(bar: Bar, n_ticks: int, spread_bps: Decimal, places: int) -> list[PathTick]:
    """The deterministic ticks through one bar (see the module doc)."""
    prices, times = _path_points(bar, n_ticks)
    vol = bar.volume / len(prices)
    return [_path_tick(ts, p, vol, spread_bps, places) for ts, p in zip(times, prices, strict=True)]


def bar_path_last(bar: Bar, n_ticks: int, spread_bps: Decimal, places: int) -> PathTick:
    """`bar_path(...)[-1]` (the close) without the ticks before it."""
    prices, times = _path_points(bar, n_ticks)
    return _path_tick(times[-1], prices[-1], bar.volume / len(prices), spread_bps, places)


def _path_points(bar: Bar, n_ticks: int) -> tuple[list[Decimal], list[int]]:
    if n_ticks == 1:
        return [bar.close], [bar.close_time_ms]
    mids = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
    span = bar.close_time_ms - bar.open_time_ms
    return [bar.open, *mids, bar.close], [bar.open_time_ms + span * k // 3 for k in range(4)]


def _path_tick(ts: int, p: Decimal, vol: Decimal, spread_bps: Decimal, places: int) -> PathTick:
    quantum = Decimal(1).scaleb(-places)
    half = spread_bps / Decimal(20_000)
    bid = (p * (1 - half)).quantize(quantum, rounding=ROUND_FLOOR)
    ask = (p * (1 + half)).quantize(quantum, rounding=ROUND_CEILING)
    if bid <= 0:
        bid = min(p, quantum)
    if ask <= bid:
        ask = bid + quantum
    last = p.quantize(quantum) if _places(p) <= places else p
    return PathTick(ts, _plain(bid), _plain(ask), _plain(last), _plain(vol.normalize()), last)


def path_arrays(
    open_ms: np.ndarray, close_ms: np.ndarray, ohlc: np.ndarray, n_ticks: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """`bar_path`'s times (epoch ms, int64) and last prices (the bars' own values, float) of every bar of a
    series at once, each (n, n_ticks): the same path (open, the nearer extreme, the other, close; or the
    close alone), for consumers that need a tick's time and price but not its quote (the backtest's ticks
    inside a bar, when nothing rests on the book)."""
    open_ms = np.asarray(open_ms, dtype=np.int64)
    close_ms = np.asarray(close_ms, dtype=np.int64)
    o, h, lo, c = (np.asarray(ohlc[:, j], dtype=np.float64) for j in range(4))
    if n_ticks == 1:
        return close_ms[:, None].copy(), c[:, None].copy()
    up = c >= o
    prices = np.column_stack([o, np.where(up, lo, h), np.where(up, h, lo), c])
    span = close_ms - open_ms
    times = np.column_stack([open_ms + span * k // 3 for k in range(4)])
    return times, prices


def _plain(d: Decimal) -> str:
    """A decimal written without an exponent (what `str()` gives for these magnitudes, made certain)."""
    s = format(d, "f")
    return s


class ReplayClock:
    """When (seconds after the start of the replay, on the wall clock) a historical instant is due."""

    def __init__(self, first_ms: int, speed: float):
        self.first_ms = first_ms
        self.speed = speed

    def due_s(self, ts_ms: int) -> float:
        if self.speed <= 0:
            return 0.0
        return (ts_ms - self.first_ms) / 1000.0 / self.speed

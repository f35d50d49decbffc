"""OHLCV files: the ONE reader and validator every consumer uses (replay, training, the backtest, downloads).

Formats (by suffix unless given): Binance kline CSV (`open_time,open,high,low,close,volume[,close_time,...]`,
with or without a header), ccxt JSON (`[[ts_ms, o, h, l, c, v], ...]`), Parquet (polars; `open_time` or
`timestamp` as epoch ms or datetime). All times are epoch milliseconds UTC.

What a file must be, and what happens when it is not (rows are numbered from 1, in file order):
- unsorted rows (an open time earlier than the row before): error naming the row;
- duplicate open times: identical rows are dropped and counted (`repairs["duplicates_dropped"]`, a
  re-downloaded page); a duplicate with different values is an error naming both rows;
- an open time off the timeframe's grid, or a step that is not the timeframe (a wrong `--timeframe`): error;
- gaps (a missing bar): error naming the row after the gap and the span missing, unless `allow_gaps`,
  when they are counted and listed in `gaps` (the backtest and training then see the gap as a gap);
- invalid values (non-positive or non-finite prices, negative volume, low/high not bounding open/close):
  error naming the row;
- a symbol not in `configs/markets` (when a markets universe is given): error naming the file.
A close_time other than `open_time + timeframe - 1` (BTCUSDT-1h.csv has one) is normalised and counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
_TF = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class OhlcvError(ValueError):
    """An OHLCV file that cannot be used as it is: the message names the file, and the row when one is at fault."""

    def __init__(self, name: str, reason: str, row: int | None = None):
        self.name, self.reason, self.row = name, reason, row
        super().__init__(f"{name}: row {row}: {reason}" if row is not None else f"{name}: {reason}")


def timeframe_ms(tf: str) -> int:
    m = _TF.match(tf or "")
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a timeframe: {tf!r} (e.g. 1m, 5m, 1h)")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def timeframe_name(ms: int) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    raise ValueError(f"{ms} ms is not a whole number of seconds")


def file_symbol(symbol: str) -> str:
    """`BTC/USDT` -> `BTCUSDT` (the file-name and exchange-id form)."""
    return symbol.replace("/", "").split(":")[0]


def data_path(root: Path, exchange: str, symbol: str, timeframe: str) -> Path:
    """Where `bnml data download` keeps a series: `<root>/<exchange>/<SYMBOL>-<timeframe>.parquet`."""
    return root / exchange / f"{file_symbol(symbol)}-{timeframe}.parquet"


@dataclass
class Ohlcv:
    """A validated, time-ordered series. `frame` has open_time (Int64 ms) and Float64 open..volume."""

    name: str
    symbol: str | None
    timeframe: str
    frame: pl.DataFrame
    repairs: dict[str, int] = field(default_factory=dict)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (last open before, first open after), ms

    @property
    def tf_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    @property
    def rows(self) -> int:
        return self.frame.height

    def span(self) -> tuple[int, int]:
        ot = self.frame["open_time"]
        return int(ot[0]), int(ot[-1])

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> Ohlcv:
        """Bars with start <= open_time < end."""
        f = self.frame
        if start_ms is not None:
            f = f.filter(pl.col("open_time") >= start_ms)
        if end_ms is not None:
            f = f.filter(pl.col("open_time") < end_ms)
        if f.height == 0:
            raise OhlcvError(self.name, "no bars in the requested date range")
        return Ohlcv(
            self.name,
            self.symbol,
            self.timeframe,
            f,
            dict(self.repairs),
            [
                g
                for g in self.gaps
                if (start_ms is None or g[1] >= start_ms) and (end_ms is None or g[0] < end_ms)
            ],
        )

    def as_datetime_frame(self) -> pl.DataFrame:
        """open_time as a UTC datetime (what the feature code and training read)."""
        return self.frame.select(
            pl.from_epoch(pl.col("open_time"), time_unit="ms").dt.replace_time_zone("UTC").alias("open_time"),
            *[pl.col(c) for c in COLUMNS[1:]],
        )


# -- reading -------------------------------------------------------------------------------------
def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix == ".json":
        return "json"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise OhlcvError(path.name, "unsupported OHLCV file type (csv, json or parquet)")


def read_raw(path: str | Path, fmt: str = "auto") -> pl.DataFrame:
    """The file's rows in file order: open_time (Int64 ms), open..volume as strings (exact as written),
    close_time (Int64 or null). Raises OhlcvError when the file cannot be read as OHLCV."""
    path = Path(path)
    kind = detect_format(path, fmt)
    try:
        if kind == "json":
            df = _read_json(path)
        elif kind == "csv":
            df = _read_csv(path)
        else:
            df = _read_parquet(path)
    except OhlcvError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, pl.exceptions.PolarsError) as exc:
        raise OhlcvError(
            path.name, f"cannot read as {kind}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if df.height == 0:
        raise OhlcvError(path.name, "no rows")
    return df


def _string_cols(df: pl.DataFrame) -> list[pl.Expr]:
    return [pl.col(c).cast(pl.Utf8) for c in COLUMNS[1:]]


def _read_json(path: Path) -> pl.DataFrame:
    data = json.loads(path.read_text(), parse_float=str, parse_int=str)
    if not isinstance(data, list) or not all(isinstance(r, list) and len(r) >= 6 for r in data):
        raise OhlcvError(path.name, "expected a JSON array of [ts, open, high, low, close, volume] rows")
    cols = {c: [str(r[i]) for r in data] for i, c in enumerate(COLUMNS)}
    df = pl.DataFrame(cols)
    return df.with_columns(pl.col("open_time").str.to_integer(), pl.lit(None, pl.Int64).alias("close_time"))


def _read_csv(path: Path) -> pl.DataFrame:
    first = path.open().readline().strip()
    if not first:
        raise OhlcvError(path.name, "no rows")
    headerless = first.split(",")[0].strip().isdigit()
    df = pl.read_csv(path, has_header=not headerless, infer_schema=False)
    if headerless:
        names = ["open_time", "open", "high", "low", "close", "volume", "close_time"]
        df = df.rename({old: new for old, new in zip(df.columns, names, strict=False)})
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise OhlcvError(
            path.name, f"header must name open_time, open, high, low, close, volume (missing {missing})"
        )
    ct = (
        pl.col("close_time").str.strip_chars().cast(pl.Int64, strict=False)
        if "close_time" in df.columns
        else pl.lit(None, pl.Int64)
    )
    return df.select(
        pl.col("open_time").str.strip_chars().str.to_integer().alias("open_time"),
        *[pl.col(c).str.strip_chars() for c in COLUMNS[1:]],
        ct.alias("close_time"),
    )


def _read_parquet(path: Path) -> pl.DataFrame:
    df = pl.read_parquet(path)
    cols = set(df.columns)
    tcol = "open_time" if "open_time" in cols else "timestamp" if "timestamp" in cols else None
    if tcol is None or not {"open", "high", "low", "close", "volume"} <= cols:
        raise OhlcvError(path.name, "needs open_time|timestamp, open, high, low, close, volume columns")
    t = pl.col(tcol).dt.epoch("ms") if df.schema[tcol].is_temporal() else pl.col(tcol).cast(pl.Int64)
    ct = (
        pl.col("close_time").cast(pl.Int64)
        if "close_time" in cols and df.schema["close_time"].is_integer()
        else pl.lit(None, pl.Int64)
    )
    out = []
    for c in COLUMNS[1:]:
        e = pl.col(c)
        # floats through their shortest repr, so 43820.01 stays 43820.01 (exact decimals downstream)
        out.append(
            e.cast(pl.Utf8) if not df.schema[c].is_float() else e.map_elements(repr, return_dtype=pl.Utf8)
        )
    return df.select(
        t.alias("open_time"),
        *[o.alias(c) for o, c in zip(out, COLUMNS[1:], strict=True)],
        ct.alias("close_time"),
    )


# -- validation ----------------------------------------------------------------------------------
def infer_step(open_times: np.ndarray, name: str) -> int:
    diffs = np.diff(open_times)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise OhlcvError(name, "cannot infer the timeframe from one row; give the timeframe")
    return int(Counter(diffs.tolist()).most_common(1)[0][0])


def validate(
    raw: pl.DataFrame, name: str, *, timeframe: str | None = None, allow_gaps: bool = False
) -> Ohlcv:
    """Check a raw frame (see the module doc); returns the series with float columns, or raises OhlcvError."""
    t = raw["open_time"].to_numpy()
    if t.size >= 2:
        back = np.flatnonzero(t[1:] < t[:-1])
        if back.size:
            i = int(back[0]) + 1
            raise OhlcvError(name, f"unsorted: open_time {t[i]} comes after {t[i - 1]}", row=i + 1)
    vals = raw.select([pl.col(c).cast(pl.Float64, strict=False) for c in COLUMNS[1:]])
    nulls = vals.select(pl.any_horizontal(pl.all().is_null()).arg_true()).to_series()
    if nulls.len():
        i = int(nulls[0])
        raise OhlcvError(name, "not numbers: " + ",".join(str(raw[c][i]) for c in COLUMNS[1:]), row=i + 1)
    repairs: dict[str, int] = {}
    dup = np.flatnonzero(t[1:] == t[:-1]) + 1 if t.size >= 2 else np.array([], dtype=np.int64)
    if dup.size:
        arr = vals.to_numpy()
        conflicting = [int(i) for i in dup if not np.array_equal(arr[i], arr[i - 1])]
        if conflicting:
            i = conflicting[0]
            raise OhlcvError(
                name, f"duplicate open_time {t[i]} with different values (also row {i})", row=i + 1
            )
        keep = np.ones(t.size, dtype=bool)
        keep[dup] = False
        raw = raw.filter(pl.Series(keep))
        vals = vals.filter(pl.Series(keep))
        t = t[keep]
        repairs["duplicates_dropped"] = int(dup.size)
    if timeframe:
        step = timeframe_ms(timeframe)
    else:
        step = infer_step(t, name)
        timeframe = timeframe_name(step)
    off = np.flatnonzero(t % step != 0) if step < _UNIT_MS["w"] else np.array([], dtype=np.int64)
    if off.size:
        i = int(off[0])
        raise OhlcvError(
            name, f"open_time {t[i]} is not on the {timeframe} grid (wrong timeframe?)", row=i + 1
        )
    gaps: list[tuple[int, int]] = []
    if t.size >= 2:
        d = np.diff(t)
        if (d < step).any():
            i = int(np.flatnonzero(d < step)[0]) + 1
            raise OhlcvError(
                name, f"bars {d[i - 1]} ms apart, shorter than the {timeframe} timeframe", row=i + 1
            )
        gap_at = np.flatnonzero(d > step)
        if gap_at.size and not allow_gaps:
            i = int(gap_at[0]) + 1
            missing = int(d[i - 1] // step) - 1
            raise OhlcvError(
                name,
                f"gap: {missing} bar(s) missing between open_time {t[i - 1]} and {t[i]} "
                f"({gap_at.size} gap(s) in all; allow gaps to load it anyway)",
                row=i + 1,
            )
        gaps = [(int(t[i]), int(t[i + 1])) for i in gap_at]
        if gaps:
            repairs["gaps"] = len(gaps)
    o, h, lo, c, v = (vals[col].to_numpy() for col in COLUMNS[1:])
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v))
        bad |= (np.minimum.reduce([o, h, lo, c]) <= 0) | (v < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise OhlcvError(name, "non-positive or non-finite price, or negative volume", row=i + 1)
    bounds = (lo > np.minimum(o, c)) | (h < np.maximum(o, c))
    if bounds.any():
        i = int(np.flatnonzero(bounds)[0])
        raise OhlcvError(
            name, f"low/high do not bound open/close (o={o[i]} h={h[i]} l={lo[i]} c={c[i]})", row=i + 1
        )
    ct = raw["close_time"]
    if ct.null_count() < ct.len():
        n = int(((ct.to_numpy() != t + step - 1) & ct.is_not_null().to_numpy()).sum())
        if n:
            repairs["close_time_normalised"] = n
    frame = pl.DataFrame({"open_time": t.astype(np.int64)}).hstack(vals)
    return Ohlcv(name, None, timeframe, frame, repairs, gaps)


def check_symbol(symbol: str, known: Iterable[str], name: str) -> None:
    known = set(known)
    if symbol not in known:
        raise OhlcvError(
            name, f"symbol {symbol} is not in configs/markets (known: {', '.join(sorted(known))})"
        )


def load(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    fmt: str = "auto",
    allow_gaps: bool = False,
    known_symbols: Iterable[str] | None = None,
) -> Ohlcv:
    """Read and validate one file (see the module doc). `known_symbols`: the markets universe to check against."""
    path = Path(path)
    if symbol is not None and known_symbols is not None:
        check_symbol(symbol, known_symbols, path.name)
    if not path.is_file():
        raise OhlcvError(path.name, f"file not found: {path}")
    out = validate(read_raw(path, fmt), path.name, timeframe=timeframe, allow_gaps=allow_gaps)
    out.symbol = symbol
    return out


def to_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write a series atomically (temp file, then rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    frame.write_parquet(tmp)
    tmp.replace(path)

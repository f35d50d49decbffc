"""Features from closed candles (pure core): polars over whole histories for training, and a numpy
kernel for the newest bar of many symbols at once for live inference.

Every feature is a function of a finite window of past bars ending at the bar itself (no exponential
smoothing), so the live path, fed the last `warmup_bars` bars of each symbol, computes exactly what
training computed on the full history (tests hold the two equal), and nothing reads the future. Rows
before the warm-up are null: no signal until every feature is defined.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from libs.common import ohlcv
from libs.common.settings.signal import FeatureSettings

OHLCV = ("open", "high", "low", "close", "volume")


def timeframe_seconds(tf: str) -> int:
    return ohlcv.timeframe_ms(tf) // 1000


def timeframe_name(seconds: int) -> str:
    return ohlcv.timeframe_name(seconds * 1000)


@dataclass(frozen=True)
class FeatureSpec:
    """The windows (bars) of every feature. Stored in model metadata so live uses what training used."""

    return_horizons: tuple[int, ...] = (1, 3, 6, 12)
    vol_short: int = 6
    vol_long: int = 24
    rsi: int = 14
    ma: int = 20
    volume: int = 20
    # Coarser timeframes as multiples of the base bar (e.g. 60 = 1m on 1s bars): for each, the last
    # context bar's return, the volatility of the last `context_bars` context-bar returns, and their trend
    # (t-statistic). Rolling, not clock-aligned, so live and training agree bar by bar.
    context: tuple[int, ...] = ()
    context_bars: int = 6
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = [f"ret_{h}" for h in self.return_horizons]
        names += [
            f"rvol_{self.vol_short}",
            f"rvol_{self.vol_long}",
            "vol_ratio",
            f"rsi_{self.rsi}",
            f"ma_z_{self.ma}",
            f"volume_z_{self.volume}",
            "hl_range",
            "close_pos",
        ]
        for k in self.context:
            names += [f"ctx{k}_ret", f"ctx{k}_rvol", f"ctx{k}_trend"]
        object.__setattr__(self, "names", tuple(names))

    @classmethod
    def from_settings(cls, s: FeatureSettings, timeframe: str | None = None) -> FeatureSpec:
        """From `signal.features`; `timeframe` (the data's) turns `context_timeframes` into bar multiples."""
        factors = []
        for ctx in s.context_timeframes:
            if timeframe is None:
                raise ValueError("context timeframes need the base timeframe")
            base, coarse = timeframe_seconds(timeframe), timeframe_seconds(ctx)
            if coarse % base or coarse <= base:
                raise ValueError(f"context timeframe {ctx} is not a multiple (> 1) of the data's {timeframe}")
            factors.append(coarse // base)
        return cls(
            tuple(s.return_horizons),
            s.vol_short,
            s.vol_long,
            s.rsi,
            s.ma,
            s.volume,
            tuple(sorted(set(factors))),
            s.context_bars,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        d = {k: v for k, v in d.items() if k != "names"}
        return cls(
            **{**d, "return_horizons": tuple(d["return_horizons"]), "context": tuple(d.get("context", ()))}
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["return_horizons"] = list(self.return_horizons)
        d["context"] = list(self.context)
        d["names"] = list(self.names)
        return d

    @property
    def warmup_bars(self) -> int:
        """Bars of history needed before every feature is defined (the live buffer length)."""
        needed_index = max(
            max(self.return_horizons),
            self.vol_long,
            self.rsi,
            self.ma - 1,
            self.volume - 1,
            *(k * self.context_bars for k in self.context),
        )
        return needed_index + 1


# Below these a denominator is rounding noise (polars' rolling and numpy's two-pass std disagree there),
# so the feature takes its neutral value instead of a ratio of noises.
EPS_RET = 1e-12  # log-return scale (volatility, RSI averages)
EPS_REL = 1e-9  # relative to the level (price std / mean, log-volume std)


def _safe_div(num: pl.Expr, den: pl.Expr, default: float, eps: float | pl.Expr = 0.0) -> pl.Expr:
    return pl.when(den > eps).then(num / den).otherwise(pl.lit(default))


def compute_features(candles: pl.DataFrame, spec: FeatureSpec, by: str | None = None) -> pl.DataFrame:
    """Add one column per feature to time-ordered candles (per `by` group when given).

    Rows whose history is shorter than the warm-up have null features.
    """

    def w(expr: pl.Expr) -> pl.Expr:
        return expr.over(by) if by else expr

    c, h, lo, v = pl.col("close"), pl.col("high"), pl.col("low"), pl.col("volume")
    lr = w(c.log().diff())
    df = candles.lazy().with_columns(_lr=lr, _i=w(pl.int_range(pl.len())), _lv=(v + 1.0).log())
    lr1 = pl.col("_lr")
    gain, loss = pl.max_horizontal(lr1, 0.0), pl.max_horizontal(-lr1, 0.0)
    exprs: list[pl.Expr] = [w(c.log() - c.log().shift(hz)).alias(f"ret_{hz}") for hz in spec.return_horizons]
    rv_s = w(lr1.rolling_std(spec.vol_short, min_samples=spec.vol_short))
    rv_l = w(lr1.rolling_std(spec.vol_long, min_samples=spec.vol_long))
    avg_gain = w(gain.rolling_mean(spec.rsi, min_samples=spec.rsi))
    avg_loss = w(loss.rolling_mean(spec.rsi, min_samples=spec.rsi))
    total = avg_gain + avg_loss
    ma_mean = w(c.rolling_mean(spec.ma, min_samples=spec.ma))
    ma_std = w(c.rolling_std(spec.ma, min_samples=spec.ma))
    lv = pl.col("_lv")
    vol_mean = w(lv.rolling_mean(spec.volume, min_samples=spec.volume))
    vol_std = w(lv.rolling_std(spec.volume, min_samples=spec.volume))
    exprs += [
        rv_s.alias(f"rvol_{spec.vol_short}"),
        rv_l.alias(f"rvol_{spec.vol_long}"),
        _safe_div(rv_s, rv_l, 1.0, EPS_RET).alias("vol_ratio"),
        # simple-average RSI (a finite window, unlike Wilder's smoothing) so a bounded buffer reproduces it
        _safe_div(100.0 * avg_gain, total, 50.0, EPS_RET).alias(f"rsi_{spec.rsi}"),
        _safe_div(c - ma_mean, ma_std, 0.0, ma_mean * EPS_REL).alias(f"ma_z_{spec.ma}"),
        _safe_div(lv - vol_mean, vol_std, 0.0, EPS_REL).alias(f"volume_z_{spec.volume}"),
        (h / lo).log().alias("hl_range"),
        _safe_div(c - lo, h - lo, 0.5).alias("close_pos"),
    ]
    n = spec.context_bars
    for k in spec.context:
        rk = w(c.log() - c.log().shift(k))
        lagged = [rk] + [w(rk.shift(i * k)) for i in range(1, n)]
        mean = pl.sum_horizontal(lagged) / n
        std = (pl.sum_horizontal([(x - mean) ** 2 for x in lagged]) / (n - 1)).sqrt()
        exprs += [
            rk.alias(f"ctx{k}_ret"),
            std.alias(f"ctx{k}_rvol"),
            _safe_div(mean * math.sqrt(n), std, 0.0, EPS_RET).alias(f"ctx{k}_trend"),
        ]
    df = df.with_columns(exprs)
    ready = pl.col("_i") >= spec.warmup_bars - 1
    df = df.with_columns([pl.when(ready).then(pl.col(n)).otherwise(None).alias(n) for n in spec.names])
    return df.drop("_lr", "_i", "_lv").collect()


def feature_matrix(df: pl.DataFrame, spec: FeatureSpec) -> np.ndarray:
    return df.select(spec.names).to_numpy().astype(np.float64, copy=False)


def complete_rows(x: np.ndarray) -> np.ndarray:
    """Mask of rows where every feature is defined and finite."""
    complete: np.ndarray = np.isfinite(x).all(axis=1)
    return complete


# -- OHLCV files -------------------------------------------------------------------------------
def load_ohlcv(path: str | Path, allow_gaps: bool = False) -> pl.DataFrame:
    """Binance kline CSV (`open_time,open,high,low,close,volume,...`), ccxt JSON arrays, or Parquet, read and
    validated by the one OHLCV reader (`libs.common.ohlcv`: unsorted rows, conflicting duplicates, gaps and
    invalid bars are errors naming the file and row).

    Returns `open_time` (UTC datetime) and float OHLCV, sorted by time.
    """
    p = Path(path)
    if p.suffix not in (".csv", ".json", ".parquet"):
        raise ValueError(f"unsupported OHLCV file type: {p.name} (csv, json or parquet)")
    return ohlcv.load(p, allow_gaps=allow_gaps).as_datetime_frame()


def infer_timeframe(df: pl.DataFrame) -> str:
    median = df["open_time"].diff().drop_nulls().dt.total_seconds().median()
    if not isinstance(median, int | float):  # None: fewer than two bars
        raise ValueError(f"cannot infer a timeframe from {df.height} bar(s)")
    return timeframe_name(int(median))


# -- the live path -----------------------------------------------------------------------------
def last_row_features(bufs: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of the newest bar of each symbol from its last `warmup_bars` bars, vectorised in numpy.

    `bufs` is (symbols, warmup_bars, 5) of open, high, low, close, volume. The same definitions as
    `compute_features` (tests hold the two equal); this path exists because on a candle close only the
    last row is needed, for hundreds of symbols at once.
    """
    if bufs.ndim != 3 or bufs.shape[1] != spec.warmup_bars or bufs.shape[2] != 5:
        raise ValueError(f"expected (symbols, {spec.warmup_bars}, 5), got {bufs.shape}")
    h, lo, c, v = bufs[:, :, 1], bufs[:, :, 2], bufs[:, :, 3], bufs[:, :, 4]
    logc = np.log(c)
    lr = np.diff(logc, axis=1)
    out = []
    for hz in spec.return_horizons:
        out.append(logc[:, -1] - logc[:, -1 - hz])
    rv_s = lr[:, -spec.vol_short :].std(axis=1, ddof=1)
    rv_l = lr[:, -spec.vol_long :].std(axis=1, ddof=1)
    gain = np.maximum(lr[:, -spec.rsi :], 0.0).mean(axis=1)
    loss = np.maximum(-lr[:, -spec.rsi :], 0.0).mean(axis=1)
    total = gain + loss
    cw = c[:, -spec.ma :]
    ma_mean, ma_std = cw.mean(axis=1), cw.std(axis=1, ddof=1)
    lv = np.log(v[:, -spec.volume :] + 1.0)
    lv_mean, lv_std = lv.mean(axis=1), lv.std(axis=1, ddof=1)
    rng = h[:, -1] - lo[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out += [
            rv_s,
            rv_l,
            np.where(rv_l > EPS_RET, rv_s / rv_l, 1.0),
            np.where(total > EPS_RET, 100.0 * gain / total, 50.0),
            np.where(ma_std > ma_mean * EPS_REL, (c[:, -1] - ma_mean) / ma_std, 0.0),
            np.where(lv_std > EPS_REL, (lv[:, -1] - lv_mean) / lv_std, 0.0),
            np.log(h[:, -1] / lo[:, -1]),
            np.where(rng > 0, (c[:, -1] - lo[:, -1]) / rng, 0.5),
        ]
        n = spec.context_bars
        for k in spec.context:
            rk = np.column_stack([logc[:, -1 - i * k] - logc[:, -1 - i * k - k] for i in range(n)])
            mean = rk.sum(axis=1) / n
            std = np.sqrt(((rk - mean[:, None]) ** 2).sum(axis=1) / (n - 1))
            out += [rk[:, 0], std, np.where(std > EPS_RET, mean * math.sqrt(n) / std, 0.0)]
    return np.column_stack(out)

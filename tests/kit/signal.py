"""Builders for the signal tests: settings pointing at a model registry, rounds of closed synthetic bars."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from libs.common.settings import BotSettings
from services.signal.core import Bar
from services.signal.drift import DriftMonitor
from services.signal.synthetic import synthetic_candles


def make_settings(models_dir: Path, **signal) -> BotSettings:
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(models_dir), **signal})
    return base.model_copy(update={"signal": sig})


def bar_rounds(n: int, symbols: list[str], seed: int = 5, start: datetime | None = None) -> list[list[Bar]]:
    """`n` rounds of closed synthetic bars, one per symbol per round (trigger id `tick-<SYM>-<k>`)."""
    frames = {s: synthetic_candles(n, seed=seed + i, start=start) for i, s in enumerate(symbols)}
    out = []
    for k in range(n):
        row = []
        for s, df in frames.items():
            r = df.row(k, named=True)
            row.append(
                Bar(
                    s,
                    r["open_time"],
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    r["volume"],
                    Decimal(f"{r['close']:.6f}"),
                    f"tick-{s}-{k}",
                    r["open_time"],
                )
            )
        out.append(row)
    return out


def drift_state(m: DriftMonitor) -> tuple:
    """Everything a drift monitor holds and checks from (its stamp aside: a new one after every change), to
    hold a monitor that took a run of bars at once equal to one fed them one by one."""
    return (
        [(k, rows, flat.tolist()) for k, rows, flat in m._chunks],
        m._window_flat.tolist(),
        [c.tolist() for c in m._window_counts],
        m.rows_seen,
        m.rows_in_window,
        m._since_check,
        m.detected,
        m._calm,
        m.last,
        list(m._outcomes),
    )

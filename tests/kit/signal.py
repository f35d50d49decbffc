"""Builders for the signal tests: settings pointing at a model registry, rounds of closed synthetic bars."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from libs.common.settings import BotSettings
from services.signal.core import Bar
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

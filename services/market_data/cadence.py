"""How market_data's status pass paces itself for a source (pure: the shell passes the mode and the time).

A replay drives its candles from the data itself, so its bars are never closed on wall time; the live
source's ticks carry the exchange's time, so a bar closes a moment after its end to let the last ticks in;
the synthetic source's ticks are stamped here and need no grace."""

from __future__ import annotations

CLOSE_GRACE_MS = 500  # live: how long after a bar's end its last ticks may still arrive
STATUS_PERIOD_MAX_S = 0.25


def source_label(mode: str) -> str:
    """The `source` a candle closed on time carries."""
    return {"synthetic": "synthetic", "replay": "replay"}.get(mode, "binance")


def closes_on_time(mode: str) -> bool:
    """Whether bars are closed by the clock (not by the data: a replay)."""
    return mode != "replay"


def close_before_ms(now_ms: int, mode: str) -> int:
    """Bars ending before this are closed."""
    return now_ms - (0 if mode == "synthetic" else CLOSE_GRACE_MS)


def status_period_s(stale_after_s: float) -> float:
    """Often enough that staleness is seen within a quarter of its threshold."""
    return min(STATUS_PERIOD_MAX_S, stale_after_s / 4)

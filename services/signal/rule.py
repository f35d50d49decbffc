"""A simple, real momentum rule (pure core): BUY when price rose more than a threshold over a window."""

from __future__ import annotations

from collections import deque
from datetime import datetime

from libs.common.contracts import Signal, Tick

RULE_VERSION = "momentum-rule-v1"


class MomentumRule:
    def __init__(self, lookback: int = 20, threshold_bps: float = 2.0, min_interval_s: float = 1.0):
        self.lookback = lookback
        self.threshold = threshold_bps / 10_000
        self.min_interval_s = min_interval_s
        self._prices: dict[str, deque[float]] = {}
        self._last_emit: dict[str, datetime] = {}

    def on_tick(self, tick: Tick, now: datetime) -> Signal | None:
        """A BUY/SELL signal when momentum passes the threshold (at most one per interval), else None."""
        window = self._prices.setdefault(tick.symbol, deque(maxlen=self.lookback))
        window.append(float(tick.last))
        if len(window) < self.lookback:
            return None
        change = window[-1] / window[0] - 1.0
        if abs(change) < self.threshold:
            return None
        last = self._last_emit.get(tick.symbol)
        if last is not None and (now - last).total_seconds() < self.min_interval_s:
            return None
        self._last_emit[tick.symbol] = now
        side = "BUY" if change > 0 else "SELL"
        prob = min(0.99, 0.5 + abs(change) / (self.threshold * 10))
        return Signal(ts=now, symbol=tick.symbol, side=side, probability=prob,
                      expected_edge_bps=abs(change) * 10_000 - 20.0, model_version=RULE_VERSION,
                      price=tick.last, reason=f"momentum {change * 10_000:.1f} bps over {self.lookback} ticks",
                      tick_id=tick.id, tick_ts=tick.ts)

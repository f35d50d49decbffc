"""signal settings."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings.base import Section


class SignalSettings(Section):
    rule_lookback_ticks: int = Field(default=20, ge=2, description="Ticks in the momentum rule's window")
    rule_threshold_bps: float = Field(default=2.0, ge=0, description="Momentum (bps) needed for BUY/SELL")
    min_interval_s: float = Field(default=1.0, ge=0, description="Minimum seconds between non-HOLD signals per symbol")
    every_nth_tick: int = Field(default=0, ge=0, description="Measurement mode: emit a decision every Nth tick (0 = off)")
    metrics_port: int = Field(default=9102, ge=0, le=65535)

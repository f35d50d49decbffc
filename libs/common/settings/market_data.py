"""market_data settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from libs.common.settings.base import Section


class SyntheticSettings(Section):
    seed: int = Field(default=42, description="Same seed, same ticks")
    ticks_per_s: float = Field(default=20.0, gt=0, le=1_000_000, description="Ticks per second per symbol")


class ReplaySettings(Section):
    path: str = Field(default="../shared/data/ohlcv/BTCUSDT-1h.csv", description="OHLCV file (ccxt JSON, kline CSV, Parquet)")
    symbol: str = Field(default="BTC/USDT", description="Symbol the file holds")
    speed: float = Field(default=0.0, ge=0, description="x real time; 0 = as fast as possible")


class MarketDataSettings(Section):
    stale_after_s: float = Field(default=10.0, gt=0, description="Seconds without an update before a symbol is stale")
    synthetic: SyntheticSettings = SyntheticSettings()
    replay: ReplaySettings = ReplaySettings()
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="0 = any free port")
    source_hint: Literal["auto"] = "auto"

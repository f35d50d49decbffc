"""Risk's configuration checks at start (pure: the settings in, the frozen section out)."""

from __future__ import annotations

from pathlib import Path

from libs.common.errors import ConfigurationError
from libs.common.markets import ROOT
from libs.common.settings import BotSettings, RiskSettings

BINANCE_ORDERS_PER_10S = 50  # Binance's spot order-rate limit; live keeps the order-loop breaker below it


def effective_risk_settings(settings: BotSettings) -> RiskSettings:
    """Risk's section as the suite resolved it (its fallbacks on market_data, monitoring and execution are
    `BotSettings` validators), refused in live mode with an order-loop trip at or above Binance's limit (the
    wide values exist for paper benchmarks)."""
    cfg = settings.risk
    if settings.mode == "live" and cfg.order_loop_trip_per_10s >= BINANCE_ORDERS_PER_10S:
        raise ConfigurationError(
            "risk.order_loop_trip_per_10s", "must be below 50 (Binance's 50 orders / 10 s) in live mode"
        )
    return cfg


def markets_file(cfg: RiskSettings) -> Path:
    path = Path(cfg.markets_path)
    return path if path.is_absolute() else ROOT / path

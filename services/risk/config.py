"""Risk's effective configuration, resolved once at start (pure: the settings in, the frozen section out)."""

from __future__ import annotations

from pathlib import Path

from libs.common.errors import ConfigurationError
from libs.common.markets import ROOT
from libs.common.settings import BotSettings, RiskSettings

BINANCE_ORDERS_PER_10S = 50  # Binance's spot order-rate limit; live keeps the order-loop breaker below it


def effective_risk_settings(settings: BotSettings) -> RiskSettings:
    """One source of truth for freshness: market_data's staleness and monitoring's heartbeat timeout when risk
    sets none; live: the account is stale after three of execution's reconcile intervals unless set. A live
    order-loop trip at or above Binance's limit is refused (the wide values exist for paper benchmarks)."""
    cfg = settings.risk
    cfg = cfg.model_copy(
        update={
            "stale_after_s": cfg.stale_after_s or settings.market_data.stale_after_s,
            "heartbeat_timeout_s": cfg.heartbeat_timeout_s or settings.monitoring.heartbeat_timeout_s,
        }
    )
    if settings.mode == "live" and cfg.account_stale_after_s is None:
        cfg = cfg.model_copy(update={"account_stale_after_s": 3 * settings.execution.reconcile_interval_s})
    if settings.mode == "live" and cfg.order_loop_trip_per_10s >= BINANCE_ORDERS_PER_10S:
        raise ConfigurationError(
            "risk.order_loop_trip_per_10s", "must be below 50 (Binance's 50 orders / 10 s) in live mode"
        )
    return cfg


def markets_file(cfg: RiskSettings) -> Path:
    path = Path(cfg.markets_path)
    return path if path.is_absolute() else ROOT / path

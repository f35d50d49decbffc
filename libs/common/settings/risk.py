"""risk settings: budgets and limits in USDT, durations in seconds, ratios as plain numbers.

There is deliberately no switch that disables a breaker or a check ("ne pas bypass les checks"): each
breaker always runs; its effect (REDUCING, HALTED, or holding one symbol) is configurable.
"""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from libs.common.contracts.base import BreakerEffect
from libs.common.settings.base import Section

# Every breaker risk runs, with its default effect.
DEFAULT_EFFECTS: dict[str, BreakerEffect] = {
    "daily_loss": "REDUCING",  # budget spent: close, do not open, until the day rolls over
    "weekly_loss": "REDUCING",
    "max_drawdown": "HALTED",  # an operator looks before anything trades again
    "volatility": "REDUCING",
    "drift": "REDUCING",
    "stale_data": "HOLD_SYMBOL",  # no fresh price: nothing on that symbol
    "heartbeat_missing": "REDUCING",  # market_data or execution silent
    "cooldown_after_loss": "REDUCING_SYMBOL",
    "cooldown_after_breaker": "REDUCING",
    "loss_streak": "REDUCING",
    "order_loop": "HALTED",  # runbook "boucle ordres": SEV-1
}
SYMBOL_BREAKERS = frozenset({"stale_data", "cooldown_after_loss", "drift"})


class RiskSettings(Section):
    starting_equity_usdt: Decimal = Field(
        default=Decimal("10000"),
        gt=0,
        description="Paper account equity, USDT (live mode: the exchange account, as execution reconciles it)",
    )
    account_stale_after_s: float | None = Field(
        default=None,
        gt=0,
        description="Live: exchange balances older than this mean the account is unknown (HOLD)"
        " (None: 3 x execution.reconcile_interval_s)",
    )
    max_notional_usdt: Decimal = Field(
        default=Decimal("100"), gt=0, description="Max notional per order, USDT"
    )
    order_fraction_of_equity: Decimal = Field(
        default=Decimal("0.005"), gt=0, le=1, description="Size per order"
    )
    daily_loss_budget_usdt: Decimal = Field(
        default=Decimal("200"), gt=0, description="Daily realized loss budget, USDT"
    )
    weekly_loss_budget_usdt: Decimal = Field(
        default=Decimal("500"), gt=0, description="Weekly realized loss budget, USDT"
    )
    verdict_ttl_s: float = Field(default=2.0, gt=0, le=60, description="Seconds a verdict stays valid")
    metrics_port: int = Field(default=9103, ge=0, le=65535)

    # budgets' calendar windows
    timezone: str = Field(
        default="UTC", description="IANA zone of the daily/weekly budget windows (weeks start Monday)"
    )
    # drawdown
    max_drawdown_pct: float = Field(
        default=10.0, gt=0, lt=100, description="Max drawdown from peak equity, percent"
    )
    drawdown_rebase_on_release: bool = Field(
        default=True, description="An operator release re-bases the peak equity to the current equity"
    )
    # exposure and positions
    max_exposure_per_symbol_usdt: Decimal = Field(
        default=Decimal("300"), gt=0, description="Max position value per symbol, USDT"
    )
    max_total_exposure_usdt: Decimal = Field(
        default=Decimal("1000"), gt=0, description="Max value of all positions, USDT"
    )
    max_open_positions: int = Field(default=3, ge=1, description="Max symbols held at once")
    dust_usdt: Decimal = Field(
        default=Decimal("1"), ge=0, description="A position worth less than this is not 'open'"
    )
    # prices
    price_collar_bps: float = Field(
        default=100.0,
        gt=0,
        le=2000,
        description="Refuse when the signal price is this far from the last price (fat finger), bps",
    )
    limit_slippage_bps: float = Field(
        default=50.0, ge=0, le=500, description="Limit price = last +/- this, bps"
    )
    # order rate (Binance: 50 orders / 10 s per account)
    max_orders_per_10s: int = Field(
        default=20, ge=1, le=49, description="Approved orders per 10 s, all symbols"
    )
    max_orders_per_10s_per_symbol: int = Field(
        default=5, ge=1, le=49, description="Approved orders per 10 s, one symbol"
    )
    order_loop_trip_per_10s: int = Field(
        default=40,
        ge=2,
        le=1000,
        description="Would-be orders per 10 s that trip the order-loop breaker (SEV-1)",
    )
    max_signal_age_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Refuse a signal whose tick (or itself) is older than this (and than verdict_ttl_s)",
    )
    # A signal older than max_signal_age_s is refused as stale anyway, so ids need remembering only a little
    # longer than that; 60 s is 30x the default (600 s held ~2.5 MiB of ids at 20 signals/s, for nothing).
    duplicate_signal_window_s: float = Field(
        default=60.0, gt=0, description="Signal ids remembered for duplicate suppression"
    )
    # volatility (EWMA of sampled log returns; ratio = short vol / long vol)
    vol_sample_s: float = Field(default=1.0, gt=0, description="Seconds between price samples")
    vol_short_samples: int = Field(default=60, ge=2, description="EWMA span of the short window, samples")
    vol_long_samples: int = Field(default=1800, ge=4, description="EWMA span of the long window, samples")
    vol_min_samples: int = Field(default=120, ge=2, description="Samples before the ratio counts")
    vol_trip_ratio: float = Field(default=2.5, gt=1, description="Trip when the ratio reaches this")
    vol_clear_ratio: float = Field(default=1.5, gt=0, description="Clear only below this (hysteresis)")
    vol_min_hold_s: float = Field(default=300.0, ge=0, description="Stay tripped at least this long")
    vol_sizing: bool = Field(
        default=True, description="Divide the order size by the ratio when it is above 1"
    )
    # freshness
    stale_after_s: float | None = Field(
        default=None,
        gt=0,
        description="No tick for a symbol for this long: hold it (None: market_data.stale_after_s)",
    )
    heartbeat_services: list[str] = Field(
        default_factory=lambda: ["market_data", "execution"],
        description="Services whose silence trips heartbeat_missing",
    )
    heartbeat_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Silence after which a service is missing (None: monitoring.heartbeat_timeout_s)",
    )
    # cooldowns and streaks
    cooldown_after_loss_s: float = Field(
        default=300.0, ge=0, description="Hold a symbol after a losing trade"
    )
    cooldown_after_breaker_s: float = Field(
        default=120.0, ge=0, description="Stay REDUCING after a breaker clears"
    )
    loss_streak_limit: int = Field(
        default=4, ge=1, description="Consecutive losing trades that trip loss_streak"
    )
    loss_streak_lock_s: float = Field(
        default=3600.0, ge=0, description="How long loss_streak holds after the last loss"
    )
    # effects and plumbing
    breaker_effects: dict[str, BreakerEffect] = Field(
        default_factory=dict, description="Override a breaker's effect (see DEFAULT_EFFECTS)"
    )
    markets_path: str = Field(
        default="configs/markets/binance_spot_markets.json",
        description="ccxt-format markets JSON with the exchange filters",
    )
    persist_interval_s: float = Field(default=1.0, gt=0, le=60, description="Account state write period")
    writer_session_timeout_s: float = Field(
        default=5.0,
        ge=3,
        le=600,
        description="The writer lock's session ends after this long without a query (Postgres "
        "idle_session_timeout): a writer paused (SIGSTOP) loses its lock and a standby takes over "
        "within this plus one lock check (1 s). A live writer checks every second.",
    )
    database_stale_after_s: float = Field(
        default=5.0, gt=0, description="No successful write for this long: HOLD"
    )
    pnl_divergence_usdt: Decimal = Field(
        default=Decimal("1"), ge=0, description="Own vs execution's realized P&L gap that raises an alert"
    )

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("breaker_effects")
    @classmethod
    def _known_breakers(cls, v: dict[str, BreakerEffect]) -> dict[str, BreakerEffect]:
        for name, effect in v.items():
            if name not in DEFAULT_EFFECTS:
                raise ValueError(f"unknown breaker {name!r} (known: {', '.join(sorted(DEFAULT_EFFECTS))})")
            if effect.endswith("_SYMBOL") and name not in SYMBOL_BREAKERS:
                raise ValueError(f"breaker {name!r} is not per symbol; use REDUCING or HALTED")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RiskSettings:
        if self.vol_clear_ratio >= self.vol_trip_ratio:
            raise ValueError("vol_clear_ratio must be below vol_trip_ratio (hysteresis)")
        if self.vol_short_samples >= self.vol_long_samples:
            raise ValueError("vol_short_samples must be below vol_long_samples")
        if self.max_orders_per_10s_per_symbol > self.max_orders_per_10s:
            raise ValueError("max_orders_per_10s_per_symbol must not exceed max_orders_per_10s")
        if self.duplicate_signal_window_s < self.max_signal_age_s:
            raise ValueError(
                "duplicate_signal_window_s must not be below max_signal_age_s (a duplicate could "
                "pass between the two)"
            )
        return self

    def effect(self, breaker: str) -> BreakerEffect:
        return self.breaker_effects.get(breaker, DEFAULT_EFFECTS[breaker])

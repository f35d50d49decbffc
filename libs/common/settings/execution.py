"""execution settings: fees, the paper broker's market model, the live broker's safety timings."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from libs.common.settings.base import Section


class ExecutionSettings(Section):
    order_type: Literal["market", "limit"] = Field(
        default="market",
        description="market: fill now at the touch (never beyond the verdict's price_limit; live sends a LIMIT IOC "
        "at price_limit); limit: a GTC limit order at price_limit that rests until crossed",
    )
    taker_fee_rate: Decimal = Field(
        default=Decimal("0.001"), ge=0, le=Decimal("0.01"), description="0.1 % Binance"
    )
    maker_fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.01"))
    bnb_fee_discount: bool = Field(
        default=False, description="Paper: Binance's 25 % fee discount when paying in BNB"
    )
    slippage_bps: Decimal = Field(
        default=Decimal("1"),
        ge=0,
        le=Decimal("500"),
        description="Paper market orders: fixed slippage beyond the touch, basis points",
    )
    slippage_bps_per_10k_usdt: Decimal = Field(
        default=Decimal("2"),
        ge=0,
        le=Decimal("500"),
        description="Paper market orders: extra slippage per 10,000 USDT of notional (size term), basis points",
    )
    paper_latency_ms: float = Field(
        default=0.0, ge=0, le=10_000, description="Paper: simulated order round trip, milliseconds"
    )
    limit_participation: Decimal = Field(
        default=Decimal("1"),
        gt=0,
        le=Decimal("1"),
        description="Paper: share of a tick's volume a resting limit order may take (partial fills beyond it)",
    )
    limit_order_ttl_s: float = Field(
        default=300.0, ge=0, description="Cancel resting limit orders after this many seconds (0 = GTC)"
    )
    starting_balances: dict[str, Decimal] = Field(
        default_factory=lambda: {"USDT": Decimal("10000")},
        description="Paper balances per asset (seeded once, journaled)",
    )
    paper_accepts_unfenced_verdicts: bool = Field(
        default=True,
        description="Paper: send a verdict with risk_epoch 0 (no fenced risk writer stamped it; tests, older "
        "producers) where no risk writer ever took the lock. Live always refuses such a verdict",
    )
    flatten_on_kill_switch: bool = Field(
        default=False, description="Close positions when the kill switch engages"
    )
    cancel_retry_interval_s: float = Field(
        default=0.5, gt=0, le=60, description="Kill switch: pause between cancel-all sweeps, seconds"
    )
    cancel_max_sweeps: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Kill switch: sweeps before the ack reports open orders left "
        "(sweeping continues in the background)",
    )
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, description="Live: reconcile with the exchange, seconds"
    )
    unknown_resolve_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Live: how long an order with an unknown outcome is looked up by client order id before it "
        "is declared never placed (Binance may answer 'does not exist' for tens of seconds)",
    )
    unknown_backoff_max_s: float = Field(
        default=5.0, gt=0, description="Live: longest pause between look-ups"
    )
    max_send_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Live: attempts for one order after definite refusals (429, -1021)",
    )
    request_timeout_ms: int = Field(
        default=10_000, ge=100, le=120_000, description="Live: ccxt request timeout"
    )
    recv_window_ms: int = Field(default=5_000, ge=100, le=60_000, description="Live: Binance recvWindow")
    live_api_url: str = Field(
        default="",
        description="Live: override of the Binance REST base URL (tests point "
        "it at the fake server); empty = api.binance.com",
    )
    live_rate_limit_ms: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Live: ccxt's rate limiter, milliseconds per request weight unit; empty = ccxt's Binance "
        "default (50). Tests against the fake exchange make it faster.",
    )
    lock_check_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the writer checks its advisory-lock connection"
    )
    writer_session_timeout_s: float = Field(
        default=5.0,
        ge=1,
        le=600,
        description="The writer lock's session ends after this long without a query (Postgres "
        "idle_session_timeout): a writer paused (SIGSTOP) loses its lock and a standby takes over "
        "within this plus one lock_check_interval_s. At least 3 x lock_check_interval_s.",
    )
    metrics_port: int = Field(default=9104, ge=0, le=65535)

    @model_validator(mode="after")
    def _lock_session_outlives_checks(self) -> ExecutionSettings:
        if self.writer_session_timeout_s < 3 * self.lock_check_interval_s:
            raise ValueError(
                "writer_session_timeout_s must be at least 3 x lock_check_interval_s (a live writer "
                "would lose its lock between two checks)"
            )
        return self

"""Risk contracts: verdicts, breakers, trading state, account state, kill switch."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from libs.common.contracts.base import (
    AccountSource,
    BreakerEffect,
    KillSwitchAction,
    Message,
    Money,
    Side,
    TradingState,
)

VERDICT_ID_PREFIX = "v-"


def verdict_id_for(signal_id: str) -> str:
    """The one verdict id a signal can ever have: derived from the signal id, so two risk processes (a restart
    overlap, a standby taking over) that both answer one signal publish the same id, hence the same client
    order id; JetStream (`Nats-Msg-Id`) and execution's journal keep one of them."""
    return VERDICT_ID_PREFIX + hashlib.sha256(signal_id.encode()).hexdigest()[:32]


class RiskVerdict(Message):
    """Risk's answer to one signal: approved with a size and limit price, or refused with reasons.

    Risk sets `id = verdict_id_for(signal_id)` (see there); other producers (tests) may use any id.
    """

    signal_id: str = Field(min_length=8, max_length=64)
    symbol: str = Field(min_length=3, max_length=32)
    side: Side
    approved: bool
    quantity: Money = Field(ge=0, description="Base-asset quantity, rounded to the exchange step")
    price_limit: Money = Field(ge=0, description="Worst acceptable price (quote per base)")
    reasons: list[str] = Field(default_factory=list, description="Why it was refused (empty when approved)")
    expires_at: AwareDatetime = Field(description="No order may be sent for this verdict after this instant")
    trading_state: TradingState = "ACTIVE"
    tick_ts: AwareDatetime | None = Field(default=None, description="Event time of the originating tick")
    issued_by: str = Field(
        default="",
        max_length=64,
        description="The risk instance that decided (the single writer at that moment)",
    )
    risk_epoch: int = Field(
        default=0,
        ge=0,
        description="The fencing epoch of the risk writer that decided (writer_epochs): "
        "execution journals no order for an epoch that is no longer risk's "
        "current one. 0 (older messages, tests): accepted only on a database "
        "where no risk writer ever took the lock",
    )

    @model_validator(mode="after")
    def _approved_is_sized(self) -> RiskVerdict:
        if self.approved and (self.quantity <= 0 or self.price_limit <= 0):
            raise ValueError("an approved verdict needs a positive quantity and price_limit")
        if not self.approved and not self.reasons:
            raise ValueError("a refused verdict needs at least one reason")
        return self


class BreakerTripped(Message):
    """A breaker tripped. HOLD_SYMBOL: nothing on `symbol`; REDUCING_SYMBOL: only exposure-reducing orders on it."""

    breaker: str = Field(min_length=1, max_length=64)
    effect: BreakerEffect
    reason: str
    symbol: str | None = None
    until: AwareDatetime | None = Field(default=None, description="None: until its condition clears")


class BreakerCleared(Message):
    breaker: str = Field(min_length=1, max_length=64)
    symbol: str | None = None
    reason: str = ""


class TradingStateChanged(Message):
    state: TradingState
    previous: TradingState
    reason: str


class ActiveBreaker(BaseModel):
    """One breaker in force: what it does, why, since when and (if known) until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    breaker: str
    effect: BreakerEffect
    reason: str
    symbol: str | None = None
    scope: str | None = Field(
        default=None, description="What it watches besides a symbol, e.g. a service name"
    )
    since: AwareDatetime
    until: AwareDatetime | None = None


class AccountState(Message):
    """Risk's view of the account; persisted as `kv_state.account_state`.

    The first block is the runbook's view; the second is what risk needs to come back exactly as it was
    after a restart (all optional, so older snapshots still load).
    """

    equity_usdt: Money = Decimal("0")
    peak_equity_usdt: Money = Decimal("0")
    drawdown_pct: float = 0.0
    daily_realized_usdt: Money = Decimal("0")
    weekly_realized_usdt: Money = Decimal("0")
    market_volatility_ratio: float = 0.0
    market_drift_detected: bool = False
    positions: dict[str, Money] = Field(default_factory=dict, description="Base quantity held per symbol")
    exposure_usdt: dict[str, Money] = Field(default_factory=dict)
    active_breakers: dict[str, str] = Field(default_factory=dict, description="breaker -> reason")
    trading_state: TradingState = "ACTIVE"

    cash_usdt: Money | None = Field(default=None, description="Quote cash by risk's own fill accounting")
    average_cost: dict[str, Money] = Field(default_factory=dict, description="Average entry price per symbol")
    last_prices: dict[str, Money] = Field(default_factory=dict)
    total_exposure_usdt: Money = Decimal("0")
    open_positions: int = 0
    realized_total_usdt: Money = Decimal("0")
    reported_daily_realized_usdt: Money = Field(
        default=Decimal("0"), description="Sum of execution's own figures"
    )
    reported_weekly_realized_usdt: Money = Decimal("0")
    day_start: AwareDatetime | None = None
    week_start: AwareDatetime | None = None
    loss_streak: int = 0
    last_loss_at: dict[str, AwareDatetime] = Field(
        default_factory=dict, description="symbol -> last losing trade"
    )
    last_breaker_clear_at: AwareDatetime | None = None
    breakers: list[ActiveBreaker] = Field(
        default_factory=list, description="Breakers in force, with since/until"
    )
    trading_state_reason: str = ""
    trading_state_since: AwareDatetime | None = None
    fills_applied: int = 0
    account_source: AccountSource = Field(
        default="configured", description="configured: paper equity from settings; exchange: live balances"
    )


class KillSwitchCommand(Message):
    """Engage or release the global kill switch. The last one on the subject is the standing state."""

    action: KillSwitchAction
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=100, description="Who asked: operator name or tool")
    flatten: bool = Field(default=False, description="Also close positions (engage only)")
    authority: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Operator authority: HMAC-SHA256 (hex) over id, ts, action, reason, actor and flatten with the "
        "kill-switch release key (libs.common.kill_switch.sign). A release without a valid one is "
        "refused where it is applied; an engage needs none",
    )


class KillSwitchAcknowledged(Message):
    """A service has latched (or released) the kill switch named by `command_id`."""

    command_id: str
    service: str
    engaged: bool
    open_orders: int | None = Field(default=None, description="Open orders left (execution: 0 confirmed)")
    detail: str = ""

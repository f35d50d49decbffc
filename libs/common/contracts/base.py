"""The base every bus message derives from: frozen, strict, identified, timestamped, versioned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer


def new_id() -> str:
    """A unique message id (uuid4, hex). Used as `Nats-Msg-Id`, so a republish is a duplicate."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The wall clock, for shells only: cores take time as an argument."""
    return datetime.now(UTC)


# Money and quantities travel as strings in JSON (no float rounding on the wire) and are Decimal in code.
Money = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str, when_used="json")]


class Message(BaseModel):
    """A bus message. `ts` is the event time (when the thing happened), always timezone-aware UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(default=1, ge=1, description="Contract version; bumped on a breaking change")
    id: str = Field(default_factory=new_id, min_length=8, max_length=64, description="Unique message id")
    ts: AwareDatetime = Field(description="Event time, UTC")


SERVICES: tuple[str, ...] = ("market_data", "signal", "risk", "execution", "ops_api")

# The shared vocabulary, defined once: every contract, core and SQL filter takes these names from here.
Side = Literal["BUY", "SELL"]
"""The side of an order, a fill or a verdict."""
SignalSide = Literal["BUY", "SELL", "HOLD"]
"""What a signal may say: a side, or HOLD (a decision too)."""
OrderType = Literal["MARKET", "LIMIT"]
OrderStatus = Literal[
    "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN"
]
"""An order's status in the journal and on `exec.order.<SYM>` (the state machine: `services/execution/core.py`)."""
ORDER_STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
OPEN_ORDER_STATUSES: tuple[OrderStatus, ...] = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "UNKNOWN")
"""Statuses of an order that may still trade (UNKNOWN: sent, outcome not known yet; it holds its symbol)."""
TERMINAL_ORDER_STATUSES: tuple[OrderStatus, ...] = ("FILLED", "CANCELLED", "REJECTED")
TradingState = Literal["ACTIVE", "REDUCING", "HALTED"]
AccountSource = Literal["configured", "exchange"]
"""Where risk's book comes from: configured (paper equity from settings) or exchange (live balances)."""
KillSwitchAction = Literal["engage", "release"]
"""What a kill-switch command does: engage (halt trading now) or release (operator only, signed)."""
BreakerEffect = Literal["REDUCING", "HALTED", "HOLD_SYMBOL", "REDUCING_SYMBOL"]
"""What a tripped breaker does: the whole account (REDUCING, HALTED) or one symbol (HOLD_SYMBOL: nothing on
it; REDUCING_SYMBOL: only exposure-reducing orders on it)."""
Mode = Literal["paper", "live"]

"""Operator controls short of the kill switch: pause new entries, resume them, exit one symbol's position.

Risk is the one that applies them (never ops_api, never execution directly): a pause is a breaker in risk's
board (REDUCING, until resumed), an exit becomes a SELL verdict that passed risk's gates like any other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from libs.common.contracts.base import Message, Money, TradingState


def symbol_error(action: str, symbol: str | None) -> str | None:
    """Why `symbol` does not fit `action` (an exit names one symbol, pause and resume none), or None."""
    if action == "exit" and not symbol:
        return "symbol: required for exit"
    if action != "exit" and symbol:
        return "symbol: only for exit"
    return None


class TradingControlCommand(Message):
    """Pause new entries (`pause`: trading goes REDUCING), undo it (`resume`), or sell one symbol's position
    (`exit`, through risk's gates). Sent by an operator through ops_api; answered by `TradingControlResult`."""

    action: Literal["pause", "resume", "exit"]
    symbol: str | None = Field(
        default=None,
        min_length=3,
        max_length=32,
        pattern=r"^[A-Z0-9]+/[A-Z0-9]+$",
        description="ccxt form (BTC/USDT); exit only",
    )
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=100, description="Who asked: operator name or tool")

    @model_validator(mode="after")
    def _symbol_only_for_exit(self) -> TradingControlCommand:
        if error := symbol_error(self.action, self.symbol):
            raise ValueError(error)
        return self


class TradingControlResult(Message):
    """What risk did with a `TradingControlCommand` (`command_id`)."""

    command_id: str = Field(min_length=8, max_length=64)
    service: str
    action: Literal["pause", "resume", "exit"]
    accepted: bool
    detail: str = ""
    trading_state: TradingState
    verdict_id: str | None = Field(default=None, description="exit: the SELL verdict published")
    quantity: Money | None = Field(default=None, description="exit: base quantity of that verdict")
    remaining: Money | None = Field(default=None, description="exit: what the position keeps after it (caps)")

"""execution settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from libs.common.settings.base import Section


class ExecutionSettings(Section):
    taker_fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.01"), description="0.1 % Binance")
    maker_fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.01"))
    starting_balances: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal("10000")},
                                                  description="Paper balances per asset")
    flatten_on_kill_switch: bool = Field(default=False, description="Close positions when the kill switch engages")
    metrics_port: int = Field(default=9104, ge=0, le=65535)

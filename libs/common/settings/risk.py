"""risk settings (budgets in USDT)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from libs.common.settings.base import Section


class RiskSettings(Section):
    starting_equity_usdt: Decimal = Field(default=Decimal("10000"), gt=0, description="Paper account equity, USDT")
    max_notional_usdt: Decimal = Field(default=Decimal("100"), gt=0, description="Max notional per order, USDT")
    order_fraction_of_equity: Decimal = Field(default=Decimal("0.005"), gt=0, le=1, description="Size per order")
    daily_loss_budget_usdt: Decimal = Field(default=Decimal("200"), gt=0, description="Daily realized loss budget, USDT")
    weekly_loss_budget_usdt: Decimal = Field(default=Decimal("500"), gt=0, description="Weekly realized loss budget, USDT")
    verdict_ttl_s: float = Field(default=2.0, gt=0, le=60, description="Seconds a verdict stays valid")
    metrics_port: int = Field(default=9103, ge=0, le=65535)

"""Execution contracts: the life of an order and its fills."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from libs.common.contracts.base import Message, Money

OrderStatus = Literal["SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN"]


class OrderEvent(Message):
    """One step in an order's life (submitted, accepted, partially filled, filled, cancelled, rejected)."""

    client_order_id: str = Field(min_length=1, max_length=36)
    verdict_id: str | None = None
    symbol: str
    side: Literal["BUY", "SELL"]
    order_type: Literal["MARKET", "LIMIT"] = "MARKET"
    status: OrderStatus
    quantity: Money = Field(ge=0)
    price: Money | None = None
    filled_quantity: Money = Decimal("0")
    average_price: Money | None = None
    exchange_order_id: str | None = None
    mode: Literal["paper", "live"] = "paper"
    reason: str = ""


class Fill(Message):
    """A trade against one of our orders. Unique by (exchange, symbol, trade_id): Binance trade ids are
    unique per symbol only."""

    client_order_id: str = Field(min_length=1, max_length=36)
    exchange: str = "paper"
    trade_id: str
    symbol: str
    side: Literal["BUY", "SELL"]
    quantity: Money = Field(gt=0)
    price: Money = Field(gt=0)
    fee: Money = Field(ge=0)
    fee_asset: str = "USDT"
    is_maker: bool = False
    realized_pnl_usdt: Money = Field(default=Decimal("0"), description="Realized P&L of this fill, net of fees")

"""Execution contracts: the life of an order and its fills."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

from pydantic import Field

from libs.common.contracts.base import (
    OPEN_ORDER_STATUSES,
    ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    Message,
    Mode,
    Money,
    OrderStatus,
    OrderType,
    Side,
)

__all__ = [
    "CLIENT_ORDER_ID_PREFIX",
    "CLIENT_ORDER_ID_RE",
    "OPEN_ORDER_STATUSES",
    "ORDER_STATUSES",
    "TERMINAL_ORDER_STATUSES",
    "Fill",
    "OrderEvent",
    "OrderStatus",
    "client_order_id",
    "is_ours",
]

# The client-order-id rule: the one id an approved verdict's order can ever have (so a retry, a redelivery
# or a restart cannot place it twice), within Binance's `newClientOrderId` alphabet and length.
CLIENT_ORDER_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
CLIENT_ORDER_ID_PREFIX = "bnml-"


def client_order_id(verdict_id: str) -> str:
    """Deterministic from the verdict id, within Binance's `^[.A-Z:/a-z0-9_-]{1,36}$` (32 characters)."""
    return CLIENT_ORDER_ID_PREFIX + hashlib.sha256(verdict_id.encode()).hexdigest()[:27]


def is_ours(client_id: str | None) -> bool:
    """Whether an exchange order carries a client order id made by `client_order_id` (ours to manage)."""
    return client_id is not None and client_id.startswith(CLIENT_ORDER_ID_PREFIX)


class OrderEvent(Message):
    """One step in an order's life (submitted, accepted, partially filled, filled, cancelled, rejected)."""

    client_order_id: str = Field(min_length=1, max_length=36)
    verdict_id: str | None = None
    symbol: str
    side: Side
    order_type: OrderType = "MARKET"
    status: OrderStatus
    quantity: Money = Field(ge=0)
    price: Money | None = None
    filled_quantity: Money = Decimal("0")
    average_price: Money | None = None
    exchange_order_id: str | None = None
    mode: Mode = "paper"
    reason: str = ""


class Fill(Message):
    """A trade against one of our orders. Unique by (exchange, symbol, trade_id): Binance trade ids are
    unique per symbol only."""

    client_order_id: str = Field(min_length=1, max_length=36)
    exchange: str = "paper"
    trade_id: str
    symbol: str
    side: Side
    quantity: Money = Field(gt=0)
    price: Money = Field(gt=0)
    fee: Money = Field(ge=0)
    fee_asset: str = "USDT"
    is_maker: bool = False
    realized_pnl_usdt: Money = Field(
        default=Decimal("0"), description="Realized P&L of this fill, net of fees"
    )

"""execution's records (pure types): an order to journal, an order row as the journal holds it, a fill, the
paper exchange's record of a request. The journal (`journal.py`) reads and writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class NewOrder:
    client_order_id: str
    verdict_id: str
    signal_id: str | None
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    price_limit: Decimal | None
    mode: str
    tick_ts: datetime | None = None
    expires_at: datetime | None = None
    purpose: str = "verdict"
    risk_epoch: int | None = None  # the verdict's risk writer epoch; None: not from a verdict (a flatten)
    issued_by: str = ""  # the risk instance that issued the verdict


@dataclass(frozen=True)
class FillRow:
    exchange: str
    trade_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    ts: datetime
    is_maker: bool
    realized_pnl_usdt: Decimal
    fee_usdt: Decimal


@dataclass(frozen=True)
class OrderRow:
    """One order as the journal holds it (the `orders` table's columns execution reads)."""

    client_order_id: str
    verdict_id: str
    signal_id: str | None
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    price_limit: Decimal | None
    status: str
    mode: str
    created_at: datetime
    reason: str = ""
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    exchange_order_id: str | None = None
    sent_at: datetime | None = None
    resting_expires_at: datetime | None = None
    trades: int = 0
    locked: Decimal = Decimal(0)
    purpose: str = "verdict"

    @property
    def sent(self) -> bool:
        """Marked sent: the request may have left (a never-sent SUBMITTED order has no `sent_at`)."""
        return self.sent_at is not None

    @classmethod
    def from_db(cls, r: dict[str, Any]) -> OrderRow:
        return cls(
            client_order_id=r["client_order_id"],
            verdict_id=r["verdict_id"],
            signal_id=r.get("signal_id"),
            symbol=r["symbol"],
            side=r["side"],
            order_type=r["order_type"],
            quantity=Decimal(r["quantity"]),
            price_limit=Decimal(r["price_limit"]) if r.get("price_limit") is not None else None,
            status=r["status"],
            mode=r["mode"],
            reason=r.get("reason") or "",
            filled_quantity=Decimal(r.get("filled_quantity") or 0),
            average_price=Decimal(r["average_price"]) if r.get("average_price") is not None else None,
            exchange_order_id=r.get("exchange_order_id"),
            created_at=r["created_at"],
            sent_at=r.get("sent_at"),
            resting_expires_at=r.get("resting_expires_at"),
            trades=int(r.get("trades") or 0),
            locked=Decimal(r.get("locked") or 0),
            purpose=r.get("purpose") or "verdict",
        )


def row_from_db(r: dict[str, Any] | None) -> OrderRow | None:
    return OrderRow.from_db(r) if r is not None else None


def fill_from_db(r: dict[str, Any]) -> FillRow:
    return FillRow(
        exchange=r["exchange"],
        trade_id=r["trade_id"],
        client_order_id=r["client_order_id"],
        symbol=r["symbol"],
        side=r["side"],
        quantity=r["quantity"],
        price=r["price"],
        fee=r["fee"],
        fee_asset=r["fee_asset"],
        ts=r["ts"],
        is_maker=bool(r.get("is_maker")),
        realized_pnl_usdt=r["realized_pnl_usdt"],
        fee_usdt=r.get("fee_usdt") or Decimal(0),
    )


@dataclass(frozen=True)
class PaperRequest:
    """An order request as the paper exchange received it (its own record, `paper_requests`)."""

    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    received_at: datetime
    instance: str

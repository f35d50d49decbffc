"""The live broker's small decisions (pure: no clock, no I/O): how a journaled order is sent to Binance,
which of an order's trades still need booking, and when a resting limit has outlived its time to live.
The reconciliation's diff is `rules.py`'s."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.execution.adapter import ExchangeOrder, ExchangeTrade

EXCHANGE = "binance"
RESTING = ("ACCEPTED", "PARTIALLY_FILLED")  # journal statuses of an order that may rest on the book


@dataclass(frozen=True)
class SendSpec:
    """ccxt's `create_order` type, price and params for one order."""

    type: str  # market | limit
    price: float | None
    params: dict[str, Any]


def send_spec(order_type: str, limit: Decimal | None, client_order_id: str) -> SendSpec:
    """A verdict's market order never fills beyond its price_limit: it goes as LIMIT IOC at that price; a
    market order without a limit (a flatten) as MARKET; a limit order rests (GTC). The journal's client
    order id is the exchange's `newClientOrderId` (the idempotency key is the journal's)."""
    if order_type == "MARKET" and limit is not None:
        otype, price, params = "limit", float(limit), {"timeInForce": "IOC"}
    elif order_type == "MARKET":
        otype, price, params = "market", None, {}
    else:
        assert limit is not None, f"a {order_type} order needs a price limit"
        otype, price, params = "limit", float(limit), {"timeInForce": "GTC"}
    params["newClientOrderId"] = client_order_id
    return SendSpec(otype, price, params)


def needs_trade_lookup(o: ExchangeOrder) -> bool:
    """The order's answer lists fewer traded units than it says are filled: its trades must be fetched."""
    return o.filled > 0 and sum((t.amount for t in o.trades), Decimal(0)) < o.filled


def unbooked(trades: Iterable[ExchangeTrade], known: set[str]) -> list[ExchangeTrade]:
    """The trades the journal does not have yet, each once, in the exchange's order."""
    out: list[ExchangeTrade] = []
    seen: set[str] = set()
    for t in trades:
        if t.id in known or t.id in seen:
            continue
        seen.add(t.id)
        out.append(t)
    return out


def fill_time(timestamp_ms: int | None, now: datetime) -> datetime:
    """A trade's time as the exchange stamped it; `now` when it did not."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms is not None else now


def past_ttl(status: str, created_at: datetime, now: datetime, ttl_s: float) -> bool:
    """A resting limit older than its time to live is cancelled (GTC emulating GTT); a ttl of 0, never."""
    return bool(ttl_s) and status in RESTING and (now - created_at).total_seconds() > ttl_s

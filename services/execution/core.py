"""Execution decisions (pure core): may this verdict be sent, its client order id, and the paper fill."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from libs.common.contracts import RiskVerdict, Tick


def client_order_id(verdict_id: str) -> str:
    """Deterministic from the verdict id, within Binance's `^[.A-Z:/a-z0-9_-]{1,36}$`."""
    return "bnml-" + hashlib.sha256(verdict_id.encode()).hexdigest()[:27]


@dataclass(frozen=True)
class Gate:
    allowed: bool
    reason: str = ""


def may_send(verdict: RiskVerdict, *, kill_switch_blocks: bool, now: datetime) -> Gate:
    """The last check before an order leaves: approved, not expired, kill switch released."""
    if kill_switch_blocks:
        return Gate(False, "kill_switch_engaged")
    if not verdict.approved:
        return Gate(False, "not_approved")
    if now >= verdict.expires_at:
        return Gate(False, "verdict_expired")
    return Gate(True)


@dataclass(frozen=True)
class PaperFill:
    price: Decimal
    quantity: Decimal
    fee_usdt: Decimal


def paper_market_fill(verdict: RiskVerdict, tick: Tick | None, taker_fee_rate: Decimal) -> PaperFill | str:
    """Fill a market order at the best bid/ask of the last tick, within the verdict's price limit.

    Returns the fill, or the reason it cannot fill.
    """
    if tick is None:
        return "no_market_price"
    price = tick.ask if verdict.side == "BUY" else tick.bid
    if (verdict.side == "BUY" and price > verdict.price_limit) or (
        verdict.side == "SELL" and price < verdict.price_limit
    ):
        return "price_beyond_limit"
    fee = (price * verdict.quantity * taker_fee_rate).quantize(Decimal("0.00000001"))
    return PaperFill(price=price, quantity=verdict.quantity, fee_usdt=fee)

"""Execution decisions (pure core): may this verdict be sent, its client order id, the order state machine.

No I/O and no clock: time is passed in. The paper exchange lives in `paper.py`, the accounting in `ledger.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# The client-order-id rule and the order statuses are the contracts' (defined once there); re-exported here
# under execution's names, which the backtest and the tests import.
from libs.common.contracts import (
    CLIENT_ORDER_ID_PREFIX,
    CLIENT_ORDER_ID_RE,
    OPEN_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    RiskVerdict,
    client_order_id,
    is_ours,
)
from services.execution.records import NewOrder

__all__ = [
    "CLIENT_ORDER_ID_PREFIX",
    "CLIENT_ORDER_ID_RE",
    "OPEN_STATUSES",
    "TERMINAL_STATUSES",
    "Gate",
    "Transition",
    "backoff_s",
    "client_order_id",
    "fill_message_id",
    "flatten_order_key",
    "is_ours",
    "may_send",
    "order_for",
    "requires_risk_epoch",
    "status_from_exchange",
    "transition",
]


def fill_message_id(exchange: str, symbol: str, trade_id: str) -> str:
    """The message id of a fill: the same for every (re)publish, so JetStream drops a republish inside its
    duplicate window (risk's fill ledger recognises the rest)."""
    return "fill-" + hashlib.sha256(f"{exchange}|{symbol}|{trade_id}".encode()).hexdigest()[:32]


def flatten_order_key(command_id: str, symbol: str) -> str:
    """The journal key (in place of a verdict id) of the order that flattens `symbol` for one kill-switch command."""
    return f"flatten:{command_id}:{symbol}"


def order_for(verdict: RiskVerdict, *, order_type: str, mode: str) -> NewOrder:
    """The journal's order for an approved verdict: its one client order id, the verdict's size and limit."""
    return NewOrder(
        client_order_id=client_order_id(verdict.id),
        verdict_id=verdict.id,
        signal_id=verdict.signal_id,
        symbol=verdict.symbol,
        side=verdict.side,
        order_type=order_type.upper(),
        quantity=verdict.quantity,
        price_limit=verdict.price_limit,
        mode=mode,
        tick_ts=verdict.tick_ts,
        expires_at=verdict.expires_at,
        risk_epoch=verdict.risk_epoch,
        issued_by=verdict.issued_by,
    )


# -- the gate ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gate:
    allowed: bool
    reason: str = ""


def requires_risk_epoch(mode: str, paper_accepts_unfenced: bool) -> bool:
    """Must a verdict carry a fenced risk writer's epoch (> 0) to be sent? Live: always (fail closed: no
    setting loosens it). Paper: unless `execution.paper_accepts_unfenced_verdicts` (the default)."""
    return mode != "paper" or not paper_accepts_unfenced


def may_send(
    verdict: RiskVerdict,
    *,
    kill_switch_blocks: bool,
    now: datetime,
    is_writer: bool = True,
    symbol_held: str = "",
    require_risk_epoch: bool = False,
) -> Gate:
    """The last check before an order leaves: writer, kill switch released, approved, stamped by a fenced risk
    writer (`require_risk_epoch`: live always; epoch 0 means no risk writer lock stood behind the verdict),
    not expired, symbol free."""
    if not is_writer:
        return Gate(False, "not_writer")
    if kill_switch_blocks:
        return Gate(False, "kill_switch_engaged")
    if not verdict.approved:
        return Gate(False, "not_approved")
    if require_risk_epoch and verdict.risk_epoch <= 0:
        return Gate(False, "unfenced_verdict")
    if now >= verdict.expires_at:
        return Gate(False, "verdict_expired")
    if symbol_held:
        return Gate(False, "symbol_held")
    return Gate(True)


# -- the order state machine ------------------------------------------------------------------------
OPEN_STATUSES: tuple[str, ...] = OPEN_ORDER_STATUSES
TERMINAL_STATUSES: tuple[str, ...] = TERMINAL_ORDER_STATUSES

_TRANSITIONS: dict[str, frozenset[str]] = {
    # SUBMITTED: journaled; it may or may not have left yet.
    "SUBMITTED": frozenset({"ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "UNKNOWN"}),
    # UNKNOWN: sent, outcome not known; only the exchange's answer moves it.
    "UNKNOWN": frozenset({"ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED"}),
    "ACCEPTED": frozenset({"PARTIALLY_FILLED", "FILLED", "CANCELLED"}),
    "PARTIALLY_FILLED": frozenset({"PARTIALLY_FILLED", "FILLED", "CANCELLED"}),
    "FILLED": frozenset(),
    "CANCELLED": frozenset(),
    # An order declared never placed that the exchange later shows: reconciliation adopts it.
    "REJECTED": frozenset({"ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELLED"}),
}


@dataclass(frozen=True)
class Transition:
    allowed: bool
    status: str
    reason: str = ""


def transition(current: str, new: str, *, adopting: bool = False) -> Transition:
    """May an order move from `current` to `new`? Leaving REJECTED needs `adopting` (the exchange's word)."""
    if current == new and current not in ("PARTIALLY_FILLED",):
        return Transition(False, current, "no_change")
    if current not in _TRANSITIONS:
        return Transition(False, current, f"unknown status {current}")
    if new not in _TRANSITIONS[current]:
        return Transition(False, current, f"{current} -> {new} not allowed")
    if current == "REJECTED" and not adopting:
        return Transition(False, current, "REJECTED is final unless the exchange shows the order")
    return Transition(True, new)


def status_from_exchange(ccxt_status: str | None, filled: Decimal, amount: Decimal) -> str:
    """Map a ccxt unified order status (open/closed/canceled/expired/rejected) onto the journal's."""
    if ccxt_status == "closed" or (amount > 0 and filled >= amount):
        return "FILLED"
    if ccxt_status in ("canceled", "cancelled", "expired"):
        return "CANCELLED"
    if ccxt_status == "rejected":
        return "REJECTED"
    if filled > 0:
        return "PARTIALLY_FILLED"
    return "ACCEPTED"


# -- retry timing for unknown outcomes --------------------------------------------------------------
def backoff_s(attempt: int, *, first: float = 0.25, cap: float = 5.0) -> float:
    """Exponential backoff: 0.25, 0.5, 1, 2, 4, cap, cap, ..."""
    return min(cap, first * 2.0 ** max(0, attempt))

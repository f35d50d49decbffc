"""Execution's operational rules (pure core): what a restart does with the paper journal, how much a kill
switch's flatten sells, and the live reconciliation diff between the journal and the exchange.

No I/O and no clock: the shells (`paper_broker.py`, `live.py`, `shell.py`) read the journal and the exchange,
call these, and carry out the actions they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Literal, NamedTuple

from libs.common.contracts import Severity, is_ours
from libs.common.markets import Markets
from services.execution.adapter import ExchangeOrder, ExchangeTrade
from services.execution.journal import OrderRow
from services.execution.ledger import ZERO, Balance, Ledger, split_symbol
from services.execution.paper import PaperOrder

RESTING = ("ACCEPTED", "PARTIALLY_FILLED")


# -- alerts: what execution raises, and how loud (`rt.alert(*KIND, detail)`) -----------------------------
class AlertKind(NamedTuple):
    severity: Severity
    title: str


WRITER_LOCK_LOST = AlertKind("SEV-1", "execution lost its writer lock")
OPEN_ORDERS_REMAIN = AlertKind("SEV-1", "kill switch: open orders remain")
SWEEP_CONFIRMED = AlertKind("INFO", "kill switch: zero open orders confirmed")
IP_BANNED = AlertKind("SEV-1", "exchange banned this IP (418)")
CREDENTIALS_REFUSED = AlertKind("SEV-1", "exchange refused our credentials")
NEVER_PLACED = AlertKind("SEV-2", "order with unknown outcome declared never placed")
FOREIGN_ORDER_CANCELLED = AlertKind("SEV-2", "kill switch cancelled an order the journal does not know")
RECONCILIATION_MISMATCH = AlertKind("SEV-2", "reconciliation found mismatches")
BALANCE_TOLERANCE = Decimal("0.00000001")  # one satoshi-sized unit: below it a balance matches
NOT_SENT_AFTER_RESTART = "interrupted before the paper match (restart); not sent"


# -- paper restart recovery ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreResting:
    """A resting paper limit order the journal holds: put it back in the paper book as it was."""

    order: PaperOrder


@dataclass(frozen=True)
class MarkNotSent:
    """An order a restart interrupted before the paper match: it never reached the (paper) exchange."""

    client_order_id: str
    reason: str = NOT_SENT_AFTER_RESTART


def paper_recovery(rows: Iterable[OrderRow]) -> list[RestoreResting | MarkNotSent]:
    """What a paper restart does with each open journal order: a resting limit is restored; anything else
    (SUBMITTED, a market order, UNKNOWN) was interrupted before its match, so it never happened."""
    out: list[RestoreResting | MarkNotSent] = []
    for row in rows:
        if row.status in RESTING and row.order_type == "LIMIT" and row.price_limit is not None:
            filled = row.filled_quantity
            avg = row.average_price if row.average_price is not None else ZERO
            out.append(
                RestoreResting(
                    PaperOrder(
                        client_order_id=row.client_order_id,
                        symbol=row.symbol,
                        side=row.side,
                        order_type="LIMIT",
                        quantity=row.quantity,
                        limit_price=row.price_limit,
                        created_at=row.created_at,
                        expires_at=row.resting_expires_at,
                        filled=filled,
                        notional=filled * avg,
                        trades=row.trades,
                        locked=row.locked,
                        status=row.status,
                    )
                )
            )
        else:
            out.append(MarkNotSent(row.client_order_id))
    return out


# -- flatten sizing -----------------------------------------------------------------------------------
def flatten_sizes(ledger: Ledger, markets: Markets | None) -> list[tuple[str, Decimal]]:
    """(symbol, quantity) to sell at market for every long position (spot: nothing to buy back): the position,
    at most the free base balance, rounded down to the exchange's step when its filters are known. Symbols
    with nothing to sell are left out; sorted by symbol."""
    out: list[tuple[str, Decimal]] = []
    for symbol, pos in sorted(ledger.positions.items()):
        base, _ = split_symbol(symbol)
        free = ledger.balances.get(base, Balance()).free
        qty = min(pos.quantity, free)
        if markets is not None and symbol in markets:
            qty = markets.round_quantity(symbol, qty, order_type="MARKET")
        if qty > 0:
            out.append((symbol, qty))
    return out


# -- live reconciliation ------------------------------------------------------------------------------
DivergenceKind = Literal[
    "status", "adopted_order", "foreign_order", "foreign_trade", "missing_fill", "balance", "initial_balance"
]


@dataclass(frozen=True)
class Divergence:
    """One finding of a reconciliation: where the journal and the exchange disagree."""

    kind: DivergenceKind
    symbol: str | None = None
    client_order_id: str | None = None
    order: str | None = None  # the exchange's order id
    trade: str | None = None
    asset: str | None = None
    journal: str | None = None  # the journal's view (a status or a balance)
    exchange: str | None = None  # the exchange's view

    @property
    def mismatch(self) -> bool:
        """Everything but the first balance sync of a run (the exchange seeds the books then) is a mismatch."""
        return self.kind != "initial_balance"

    def as_finding(self) -> dict[str, str]:
        """The finding as recorded in `exec_reconciliations.findings` (only the fields that apply)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def diff_open_order(symbol: str, o: ExchangeOrder, row: OrderRow | None) -> Divergence | None:
    """An order the exchange lists as open, against the journal's row for its client id (None: no row).
    `adopted_order`: ours (our client-id rule) but unknown to the journal, so adopt it; `foreign_order`:
    not ours, flag it; `status`: the journal does not hold it as open."""
    if row is None:
        kind: DivergenceKind = "adopted_order" if is_ours(o.client_order_id) else "foreign_order"
        return Divergence(kind, symbol=symbol, order=str(o.id), client_order_id=o.client_order_id or "")
    if row.status not in RESTING:
        return Divergence(
            "status", client_order_id=row.client_order_id, journal=row.status, exchange=o.status
        )
    return None


def reconcile(
    symbol: str, journal_rows: Mapping[str, OrderRow | None], exchange_orders: Iterable[ExchangeOrder]
) -> list[Divergence]:
    """The open-order diff of one symbol: `journal_rows` maps each listed order's client id to its row."""
    out = []
    for o in exchange_orders:
        d = diff_open_order(symbol, o, journal_rows.get(o.client_order_id or ""))
        if d is not None:
            out.append(d)
    return out


def diff_trade(
    symbol: str, t: ExchangeTrade, row: OrderRow | None, known_trade_ids: set[str]
) -> Divergence | None:
    """A recent exchange trade against the journal: of no order we know (`foreign_trade`), or of ours but
    not journaled (`missing_fill`)."""
    if row is None:
        return Divergence("foreign_trade", symbol=symbol, order=str(t.order), trade=t.id)
    if t.id not in known_trade_ids:
        return Divergence("missing_fill", client_order_id=row.client_order_id, trade=t.id)
    return None


def diff_balances(
    journal: Mapping[str, Balance], exchange: Mapping[str, tuple[Decimal, Decimal]], *, first: bool
) -> list[Divergence]:
    """Each asset's journal total (free + locked) against the exchange's (free + used), sorted by asset.
    `first`: the run's first sync, whose differences are `initial_balance` (not a mismatch)."""
    out = []
    for asset in sorted(set(journal) | set(exchange)):
        mine = journal.get(asset, Balance())
        free, used = exchange.get(asset, (ZERO, ZERO))
        if abs(mine.free + mine.locked - free - used) > BALANCE_TOLERANCE:
            out.append(
                Divergence(
                    "initial_balance" if first else "balance",
                    asset=asset,
                    journal=str(mine.free + mine.locked),
                    exchange=str(free + used),
                )
            )
    return out


# -- the kill switch's acknowledgement ----------------------------------------------------------------
@dataclass(frozen=True)
class SweepReport:
    """What the acknowledgement of an engage says, and whether open orders remain (alert, keep sweeping)."""

    headline: str
    detail: str

    @property
    def orders_remain(self) -> bool:
        return not self.headline.startswith("zero")


def sweep_report(left: int, unknown: int = 0, flattened: str | None = None) -> SweepReport:
    """The engage's report: `left` orders still open after the sweeps, `unknown` orders whose outcome is
    still being resolved, and what the flatten did (None: no flatten asked)."""
    if left == 0:
        headline = "zero open orders confirmed"
    else:
        headline = f"{left} open orders could not be confirmed cancelled; still sweeping"
    parts = [headline]
    if flattened:
        parts.append(flattened)
    if unknown:
        parts.append(
            f"{unknown} orders with an unknown outcome still being resolved (cancelled if they surface)"
        )
    return SweepReport(headline, "; ".join(parts))


def standing_sweep_report(left: int) -> str:
    """The acknowledgement of an engage that stood when this instance became the writer."""
    return "zero open orders confirmed" if left == 0 else f"{left} open orders left"

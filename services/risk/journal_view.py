"""Risk's read-only view of execution's journal (Postgres `orders`, `balances`) and of its own fill ledger.

Risk never writes these tables; it reads them to learn what became of its verdicts (an order event lost or
not yet delivered) and, in live mode, what the exchange account holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

OPEN_STATUSES = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "UNKNOWN")

# Orders from verdicts that can still move risk's book: open ones, and terminal ones whose journaled fills
# risk has not applied yet (the fill is on its way on FILLS). Open orders use the partial index on status.
REBUILD_SQL = """
SELECT o.verdict_id, o.client_order_id, o.symbol, o.side, o.quantity, o.price_limit, o.status, o.filled_quantity,
       coalesce((SELECT sum(l.quantity) FROM risk_fill_ledger l WHERE l.client_order_id = o.client_order_id), 0)
         AS applied
FROM orders o
WHERE o.purpose = 'verdict'
  AND (o.status IN ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', 'UNKNOWN') OR o.updated_at > now() - interval '1 day')
"""


@dataclass(frozen=True)
class JournalOrder:
    verdict_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    price_limit: Decimal | None
    status: str
    filled: Decimal
    applied: Decimal = Decimal("0")

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


def _order(row: dict[str, Any]) -> JournalOrder:
    return JournalOrder(row["verdict_id"], row["client_order_id"], row["symbol"], row["side"], Decimal(row["quantity"]),
                        Decimal(row["price_limit"]) if row["price_limit"] is not None else None, row["status"],
                        Decimal(row["filled_quantity"]), Decimal(row.get("applied") or 0))


async def orders_for(conn, verdict_ids: list[str]) -> dict[str, JournalOrder]:
    """The journal's rows for these verdicts (a verdict with no row was never journaled)."""
    rows = await (await conn.execute(
        "SELECT verdict_id, client_order_id, symbol, side, quantity, price_limit, status, filled_quantity"
        " FROM orders WHERE verdict_id = ANY(%s)", (verdict_ids,))).fetchall()
    return {r["verdict_id"]: _order(r) for r in rows}


async def orders_to_reserve(conn) -> list[JournalOrder]:
    """Orders whose outcome is not yet all in risk's book: open, or with fills risk has not applied."""
    rows = await (await conn.execute(REBUILD_SQL)).fetchall()
    orders = [_order(r) for r in rows]
    return [o for o in orders if o.open or o.filled > o.applied]


@dataclass(frozen=True)
class ExchangeAccount:
    """The exchange's balances as execution last reconciled them (live mode)."""

    balances: dict[str, Decimal]  # asset -> free + locked
    updated_at: datetime          # the oldest row's reconcile time: the account is as fresh as its stalest asset


async def exchange_account(conn) -> ExchangeAccount | None:
    rows = await (await conn.execute("SELECT asset, free, locked, updated_at FROM balances")).fetchall()
    if not rows:
        return None
    return ExchangeAccount({r["asset"]: Decimal(r["free"]) + Decimal(r["locked"]) for r in rows},
                           min(r["updated_at"] for r in rows))

"""Risk's read-only view of execution's journal (Postgres `orders`, `balances`) and of its own fill ledger.

Risk never writes these tables; it reads them to learn what became of its verdicts (an order event lost or
not yet delivered) and, in live mode, what the exchange account holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from libs.common.contracts import OPEN_ORDER_STATUSES

OPEN_STATUSES = OPEN_ORDER_STATUSES

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
    return JournalOrder(
        row["verdict_id"],
        row["client_order_id"],
        row["symbol"],
        row["side"],
        Decimal(row["quantity"]),
        Decimal(row["price_limit"]) if row["price_limit"] is not None else None,
        row["status"],
        Decimal(row["filled_quantity"]),
        Decimal(row.get("applied") or 0),
    )


async def orders_for(conn, verdict_ids: list[str]) -> dict[str, JournalOrder]:
    """The journal's rows for these verdicts (a verdict with no row was never journaled)."""
    rows = await (
        await conn.execute(
            "SELECT verdict_id, client_order_id, symbol, side, quantity, price_limit, status, filled_quantity"
            " FROM orders WHERE verdict_id = ANY(%s)",
            (verdict_ids,),
        )
    ).fetchall()
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
    age_s: float  # the oldest row's age: the account is as fresh as its stalest asset


# Journaled fills risk has not applied yet: while there are any, the balances (which include them) and
# risk's book (which does not) describe different moments, so the balances are not adopted.
UNAPPLIED_FILLS_SQL = """
SELECT count(*) AS n FROM fills f
WHERE f.ts > now() - interval '2 days'
  AND NOT EXISTS (SELECT 1 FROM risk_fill_ledger l
                  WHERE l.exchange = f.exchange AND l.trade_id = f.trade_id AND l.symbol = f.symbol)
"""


async def exchange_account(conn) -> tuple[ExchangeAccount | None, float, int]:
    """(the balances, their age in seconds by the database's clock, journaled fills risk has not applied).
    Read in one snapshot so the three agree."""
    rows = await (
        await conn.execute(
            "SELECT asset, free, locked, extract(epoch FROM now() - updated_at) AS age FROM balances"
        )
    ).fetchall()
    unapplied = (await (await conn.execute(UNAPPLIED_FILLS_SQL)).fetchone())["n"]
    if not rows:
        return None, float("inf"), unapplied
    account = ExchangeAccount(
        {r["asset"]: Decimal(r["free"]) + Decimal(r["locked"]) for r in rows},
        max(float(r["age"]) for r in rows),
    )
    return account, account.age_s, unapplied

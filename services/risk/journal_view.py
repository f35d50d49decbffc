"""Risk's read-only view of execution's journal (Postgres `orders`, `balances`) and of its own fill ledger:
the typed rows (pure; the SQL that reads them is in `services/risk/store.py`).

Risk never writes these tables; it reads them to learn what became of its verdicts (an order event lost or
not yet delivered) and, in live mode, what the exchange account holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from libs.common.contracts import OPEN_ORDER_STATUSES

OPEN_STATUSES = OPEN_ORDER_STATUSES


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


def order_from_row(row: Mapping[str, Any]) -> JournalOrder:
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


def still_moving(orders: Iterable[JournalOrder]) -> list[JournalOrder]:
    """Orders whose outcome is not yet all in risk's book: open, or with fills risk has not applied."""
    return [o for o in orders if o.open or o.filled > o.applied]


@dataclass(frozen=True)
class ExchangeAccount:
    """The exchange's balances as execution last reconciled them (live mode)."""

    balances: dict[str, Decimal]  # asset -> free + locked
    age_s: float  # the oldest row's age: the account is as fresh as its stalest asset


def account_from_rows(rows: Iterable[Mapping[str, Any]]) -> ExchangeAccount | None:
    """`balances` rows (asset, free, locked, age) as one account; None when there are none."""
    rows = list(rows)
    if not rows:
        return None
    return ExchangeAccount(
        {r["asset"]: Decimal(r["free"]) + Decimal(r["locked"]) for r in rows},
        max(float(r["age"]) for r in rows),
    )

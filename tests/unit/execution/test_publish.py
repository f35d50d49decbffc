"""execution's order events: one builder for a new order and for a journal row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.execution.journal import NewOrder, OrderRow
from services.execution.publish import order_event

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = dict(
    client_order_id="c1",
    verdict_id="v1",
    signal_id=None,
    symbol="BTC/USDT",
    side="BUY",
    order_type="LIMIT",
    quantity=Decimal("0.5"),
    price_limit=Decimal("100"),
    mode="live",
)


def test_a_new_order_event_has_nothing_filled_and_the_publishers_mode():
    ev = order_event(NewOrder(**FIELDS), NOW, "SUBMITTED", "paper", "why")
    assert (ev.client_order_id, ev.verdict_id, ev.symbol, ev.side, ev.order_type) == (
        "c1", "v1", "BTC/USDT", "BUY", "LIMIT",
    )  # fmt: skip
    assert (ev.status, ev.quantity, ev.price, ev.mode, ev.reason, ev.ts) == (
        "SUBMITTED", Decimal("0.5"), Decimal("100"), "paper", "why", NOW,
    )  # fmt: skip
    assert ev.filled_quantity == 0 and ev.average_price is None and ev.exchange_order_id is None


def test_a_journal_row_event_carries_its_fills_average_and_exchange_id():
    row = OrderRow(
        **FIELDS,
        status="PARTIALLY_FILLED",
        created_at=NOW,
        filled_quantity=Decimal("0.2"),
        average_price=Decimal("99.5"),
        exchange_order_id="x9",
    )
    ev = order_event(row, NOW, row.status, row.mode, "")
    assert (ev.filled_quantity, ev.average_price, ev.exchange_order_id) == (
        Decimal("0.2"),
        Decimal("99.5"),
        "x9",
    )
    assert ev.status == "PARTIALLY_FILLED" and ev.mode == "live"

"""execution's operational rules (pure): paper restart recovery, flatten sizing, the reconciliation diff and
the kill switch's report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from libs.common.contracts import RiskVerdict, client_order_id
from services.execution.adapter import ExchangeOrder, ExchangeTrade
from services.execution.core import order_for
from services.execution.journal import OrderRow
from services.execution.ledger import Balance, Ledger, Position
from services.execution.rules import (
    Divergence,
    MarkNotSent,
    RestoreResting,
    diff_balances,
    diff_open_order,
    diff_trade,
    flatten_sizes,
    paper_recovery,
    reconcile,
    standing_sweep_report,
    sweep_report,
)

D = Decimal
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OURS = client_order_id("v-1")


def row(status: str, order_type: str = "LIMIT", **kw) -> OrderRow:
    base = dict(
        client_order_id=OURS,
        verdict_id="v-1",
        signal_id="s-1",
        symbol="BTC/USDT",
        side="BUY",
        order_type=order_type,
        quantity=D("0.01"),
        price_limit=D("50000"),
        status=status,
        mode="paper",
        created_at=NOW,
    )
    base.update(kw)
    return OrderRow(**base)


def xorder(coid: str | None, status: str = "open", **kw) -> ExchangeOrder:
    base = dict(
        id="42",
        client_order_id=coid,
        symbol="BTC/USDT",
        side="BUY",
        type="LIMIT",
        status=status,
        amount=D("0.01"),
        filled=D(0),
        price=D("50000"),
        average=None,
    )
    base.update(kw)
    return ExchangeOrder(**base)


# -- paper restart recovery ------------------------------------------------------------------------
def test_a_resting_paper_limit_is_restored_as_it_was_journaled():
    rest = row(
        "PARTIALLY_FILLED",
        filled_quantity=D("0.004"),
        average_price=D("49990"),
        trades=2,
        locked=D("300.5"),
        resting_expires_at=NOW + timedelta(seconds=300),
    )
    [step] = paper_recovery([rest])
    assert isinstance(step, RestoreResting)
    o = step.order
    assert (o.client_order_id, o.symbol, o.side, o.order_type) == (OURS, "BTC/USDT", "BUY", "LIMIT")
    assert o.quantity == D("0.01") and o.limit_price == D("50000") and o.filled == D("0.004")
    assert o.notional == D("0.004") * D("49990") and o.trades == 2 and o.locked == D("300.5")
    assert o.created_at == NOW and o.expires_at == NOW + timedelta(seconds=300)
    assert o.status == "PARTIALLY_FILLED" and o.remaining == D("0.006")


def test_an_order_interrupted_before_its_paper_match_never_happened():
    steps = paper_recovery(
        [row("SUBMITTED"), row("ACCEPTED", order_type="MARKET"), row("UNKNOWN"), row("ACCEPTED")]
    )
    kinds = [type(s) for s in steps]
    assert kinds == [MarkNotSent, MarkNotSent, MarkNotSent, RestoreResting]
    assert all(s.reason == "interrupted before the paper match (restart); not sent" for s in steps[:3])


# -- flatten sizing --------------------------------------------------------------------------------
def test_flatten_sells_each_long_position_at_most_its_free_base_balance():
    ledger = Ledger(
        balances={"BTC": Balance(free=D("0.5"), locked=D("0.2")), "ETH": Balance(free=D("3"))},
        positions={
            "BTC/USDT": Position(quantity=D("0.7"), cost=D("35000")),
            "ETH/USDT": Position(quantity=D("2"), cost=D("4000")),
            "SOL/USDT": Position(quantity=D("0")),  # nothing held
            "XRP/USDT": Position(quantity=D("10")),  # no free XRP: nothing to sell
        },
    )
    assert flatten_sizes(ledger, None) == [("BTC/USDT", D("0.5")), ("ETH/USDT", D("2"))]
    assert "XRP" not in ledger.balances  # sizing reads the books, never changes them


def test_flatten_rounds_down_to_the_exchange_step_and_drops_what_rounds_to_nothing():
    from libs.common.markets import load_markets

    markets = load_markets()
    ledger = Ledger(
        balances={"BTC": Balance(free=D("0.123456789")), "ETH": Balance(free=D("0.00001"))},
        positions={
            "BTC/USDT": Position(quantity=D("0.123456789"), cost=D("1")),
            "ETH/USDT": Position(quantity=D("0.00001"), cost=D("1")),
        },
    )
    sizes = dict(flatten_sizes(ledger, markets))
    btc = markets.round_quantity("BTC/USDT", D("0.123456789"), order_type="MARKET")
    assert sizes["BTC/USDT"] == btc and btc <= D("0.123456789")
    eth = markets.round_quantity("ETH/USDT", D("0.00001"), order_type="MARKET")
    assert ("ETH/USDT" in sizes) == (eth > 0)


# -- the reconciliation diff -----------------------------------------------------------------------
def test_an_open_exchange_order_the_journal_lost_is_adopted_if_ours_else_flagged():
    adopted = diff_open_order("BTC/USDT", xorder(OURS), None)
    assert adopted == Divergence("adopted_order", symbol="BTC/USDT", order="42", client_order_id=OURS)
    foreign = diff_open_order("BTC/USDT", xorder("web_123"), None)
    assert foreign is not None and foreign.kind == "foreign_order" and foreign.mismatch
    assert foreign.as_finding() == {
        "kind": "foreign_order",
        "symbol": "BTC/USDT",
        "order": "42",
        "client_order_id": "web_123",
    }
    assert diff_open_order("BTC/USDT", xorder(None), None).as_finding()["client_order_id"] == ""


def test_an_open_exchange_order_the_journal_holds_as_closed_is_a_status_divergence():
    d = diff_open_order("BTC/USDT", xorder(OURS), row("CANCELLED"))
    assert d is not None
    assert d.as_finding() == {
        "kind": "status",
        "client_order_id": OURS,
        "journal": "CANCELLED",
        "exchange": "open",
    }
    assert diff_open_order("BTC/USDT", xorder(OURS), row("ACCEPTED")) is None  # both say open
    assert diff_open_order("BTC/USDT", xorder(OURS), row("PARTIALLY_FILLED")) is None


def test_reconcile_diffs_every_listed_order_against_its_journal_row():
    orders = [xorder(OURS), xorder("web_1", id="7"), xorder(client_order_id("v-2"), id="8")]
    journal = {
        OURS: row("ACCEPTED"),
        client_order_id("v-2"): row("FILLED", client_order_id=client_order_id("v-2")),
    }
    kinds = [d.kind for d in reconcile("BTC/USDT", journal, orders)]
    assert kinds == ["foreign_order", "status"]
    assert reconcile("BTC/USDT", journal, []) == []


def test_trades_of_no_known_order_or_not_journaled_are_divergences():
    t = ExchangeTrade(
        id="t1", order="42", amount=D("0.01"), price=D("50000"), fee_cost=D("0.5"), fee_currency="USDT",
        timestamp_ms=None, is_maker=False,
    )  # fmt: skip
    assert diff_trade("BTC/USDT", t, None, set()).as_finding() == {
        "kind": "foreign_trade",
        "symbol": "BTC/USDT",
        "order": "42",
        "trade": "t1",
    }
    missing = diff_trade("BTC/USDT", t, row("FILLED"), {"t0"})
    assert missing is not None and missing.as_finding() == {
        "kind": "missing_fill",
        "client_order_id": OURS,
        "trade": "t1",
    }
    assert diff_trade("BTC/USDT", t, row("FILLED"), {"t1"}) is None


def test_balances_differ_beyond_a_satoshi_and_the_first_sync_is_not_a_mismatch():
    journal = {"USDT": Balance(free=D("100"), locked=D("5")), "BTC": Balance(free=D("1"))}
    exchange = {"USDT": (D("100"), D("5.000000001")), "ETH": (D("2"), D("0"))}
    found = diff_balances(journal, exchange, first=False)
    assert [(d.kind, d.asset, d.journal, d.exchange) for d in found] == [
        ("balance", "BTC", "1", "0"),
        ("balance", "ETH", "0", "2"),
    ]
    first = diff_balances(journal, exchange, first=True)
    assert {d.kind for d in first} == {"initial_balance"} and not any(d.mismatch for d in first)


# -- the kill switch's report ------------------------------------------------------------------------
def test_the_sweep_report_leads_with_what_is_left():
    ok = sweep_report(0, 0, "flattened: nothing held")
    assert ok.detail == "zero open orders confirmed; flattened: nothing held" and not ok.orders_remain
    bad = sweep_report(2, 1)
    assert (
        bad.orders_remain and bad.headline == "2 open orders could not be confirmed cancelled; still sweeping"
    )
    assert bad.detail.endswith(
        "1 orders with an unknown outcome still being resolved (cancelled if they surface)"
    )
    assert sweep_report(0).detail == "zero open orders confirmed"
    assert standing_sweep_report(0) == "zero open orders confirmed"
    assert standing_sweep_report(3) == "3 open orders left"


# -- the journal's order for a verdict -------------------------------------------------------------
def test_order_for_a_verdict_carries_its_one_client_order_id_and_its_epoch():
    v = RiskVerdict(
        ts=NOW, signal_id="signal-9", symbol="ETH/USDT", side="SELL", approved=True, quantity=D("0.2"),
        price_limit=D("3000"), expires_at=NOW + timedelta(seconds=5), risk_epoch=4, issued_by="risk-a",
    )  # fmt: skip
    o = order_for(v, order_type="limit", mode="live")
    assert o.client_order_id == client_order_id(v.id) and o.verdict_id == v.id and o.signal_id == "signal-9"
    assert (o.symbol, o.side, o.order_type, o.quantity, o.price_limit) == (
        "ETH/USDT",
        "SELL",
        "LIMIT",
        D("0.2"),
        D("3000"),
    )
    assert (o.mode, o.risk_epoch, o.issued_by, o.purpose, o.expires_at) == (
        "live",
        4,
        "risk-a",
        "verdict",
        v.expires_at,
    )

"""Fill identity: Binance trade ids are unique per symbol only, so a fill is (exchange, symbol, trade_id)
in execution's journal and in risk's fill ledger. The same trade id on two symbols is two fills; the same
trade id twice on one symbol is one."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from libs.common.contracts import utcnow
from libs.common.db import open_pool
from services.execution.journal import FillRow, Journal, NewOrder
from services.execution.ledger import Ledger

pytestmark = pytest.mark.integration
D = Decimal


def _order(coid: str, symbol: str) -> NewOrder:
    return NewOrder(
        client_order_id=coid,
        verdict_id=f"v-{coid}",
        signal_id=None,
        symbol=symbol,
        side="BUY",
        order_type="MARKET",
        quantity=D("1"),
        price_limit=None,
        mode="live",
    )


def _fill(coid: str, symbol: str, trade_id: str) -> FillRow:
    return FillRow(
        exchange="binance",
        trade_id=trade_id,
        client_order_id=coid,
        symbol=symbol,
        side="BUY",
        quantity=D("1"),
        price=D("10"),
        fee=D("0.01"),
        fee_asset="USDT",
        ts=utcnow(),
        is_maker=False,
        realized_pnl_usdt=D("0"),
        fee_usdt=D("0.01"),
    )


async def test_the_same_trade_id_on_two_symbols_is_two_fills_and_once_on_one_symbol(database_url):
    pool = await open_pool(database_url)
    try:
        journal = Journal(pool, "live")
        ledger = Ledger()
        got = {}
        for coid, symbol in (("bnml-a", "ETH/USDT"), ("bnml-b", "XRP/USDT")):
            assert await journal.insert_order(_order(coid, symbol), "test")
            got[symbol] = await journal.commit_order_update(
                coid,
                status="FILLED",
                reason=None,
                filled=D("1"),
                average_price=D("10"),
                fee_usdt_add=D("0.01"),
                locked=D("0"),
                trades=1,
                fills=[_fill(coid, symbol, "12345")],
                ledger=ledger,
                symbol=symbol,
                assets={"USDT"},
            )
        assert [len(v) for v in got.values()] == [1, 1], "a trade id seen on another symbol was dropped"
        again = await journal.commit_order_update(
            "bnml-a",
            status="FILLED",
            reason=None,
            filled=D("1"),
            average_price=D("10"),
            fee_usdt_add=D("0"),
            locked=D("0"),
            trades=1,
            fills=[_fill("bnml-a", "ETH/USDT", "12345")],
            ledger=ledger,
            symbol="ETH/USDT",
            assets={"USDT"},
        )
        assert again == [], "the same trade of the same symbol was journaled twice"
    finally:
        await pool.close()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM fills WHERE trade_id = '12345'").fetchone()[0] == 2
        insert = (
            "INSERT INTO risk_fill_ledger (exchange, trade_id, client_order_id, symbol, side, quantity, price,"
            " fee, fee_asset, realized_own_usdt, realized_reported_usdt, ts)"
            " VALUES ('binance', '777', %s, %s, 'BUY', 1, 10, 0, 'USDT', 0, 0, now())"
        )
        conn.execute(insert, ("bnml-a", "ETH/USDT"))
        conn.execute(insert, ("bnml-b", "XRP/USDT"))  # another symbol: a different fill
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, ("bnml-a", "ETH/USDT"))

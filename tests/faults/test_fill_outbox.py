"""Issue 16.2: a fill journaled by execution whose publish fails still reaches risk, exactly once.

Execution talks to NATS through a TCP proxy and pays a paper latency, so the proxy can be cut after its
order is journaled and before its fill is: the fill commits while NATS is unreachable, and the publish
fails (a real failure, no switch in the code). Both services are then SIGKILLed and restarted: risk's
positions, cash and realized P&L equal the journal's, the losing SELL counts against the daily loss, and
risk's ledger holds each journaled fill once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.common import subjects
from tests.faults.proxy import TcpProxy
from tests.helpers import wait_until
from tests.kit.execution import (
    BOOK_CONFIG,
    journal_book,
    make_verdict,
    query,
    risk_book,
    scalar,
    ticking,
    wait_books_agree,
)

pytestmark = pytest.mark.faults

QTY = Decimal("0.01")  # 600 USDT


def _status(database_url: str, verdict_id: str) -> str | None:
    rows = query(database_url, "SELECT status FROM orders WHERE verdict_id = %s", (verdict_id,))
    return rows[0][0] if rows else None


async def test_a_fill_whose_publish_failed_reaches_risk_after_restarts(
    services, bus, database_url, nats_server
):
    proxy = TcpProxy(nats_server.port).start()
    try:
        services.configure(
            {**BOOK_CONFIG, "execution": {**BOOK_CONFIG["execution"], "paper_latency_ms": 1500}}
        )
        env = {"NATS_URL": proxy.url}
        execution = services.start("execution", env=env)
        risk = services.start("risk")
        async with ticking(bus, every_s=0.1):
            buy = make_verdict("BUY", qty=QTY, ttl_s=120, epoch_of=database_url)
            await bus.publish(subjects.verdict(buy.symbol), buy)
            await wait_until(
                lambda: _status(database_url, buy.id) == "FILLED", timeout=20, message="the BUY filled"
            )
            await wait_books_agree(database_url)  # positive control: a fill that is published arrives
            assert risk_book(database_url)["positions"] == {"BTC/USDT": QTY}

            sell = make_verdict(
                "SELL", qty=QTY, ttl_s=120, epoch_of=database_url
            )  # the spread and two fees: a loss
            await bus.publish(subjects.verdict(sell.symbol), sell)
            await wait_until(
                lambda: _status(database_url, sell.id) == "SUBMITTED",
                timeout=20,
                message="the SELL journaled, its paper latency running",
            )
            proxy.cut()
            await wait_until(
                lambda: _status(database_url, sell.id) == "FILLED",
                timeout=20,
                message="the SELL's fill journaled while NATS is cut off",
            )
            execution.kill()
            risk.kill()
            assert risk_book(database_url)["positions"] == {"BTC/USDT": QTY}, (
                "the fill reached risk: no fault"
            )
            proxy.restore()
            services.start("execution", env=env)
            services.start("risk")
            await wait_books_agree(database_url)
        journal = journal_book(database_url)
        book = risk_book(database_url)
        assert journal["realized"] < 0, journal
        assert book["positions"] == {} and book["daily"] == journal["realized"], book
        assert scalar(database_url, "SELECT count(*) FROM fills WHERE published_at IS NULL") == 0
        assert scalar(database_url, "SELECT count(*) FROM risk_fill_ledger") == len(journal["fills"]) == 2
    finally:
        services.stop_all()  # while the proxy still passes their goodbyes (else each waits out its stop timeout)
        proxy.close()

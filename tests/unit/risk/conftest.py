"""Builders for the risk core tests: an engine with fresh data, signals and fills at a given time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from libs.common.contracts import Fill, Signal
from libs.common.markets import load_markets
from libs.common.settings import BotSettings
from services.risk.core import RiskEngine

T0 = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday
PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000"), "XRP/USDT": Decimal("0.6")}


def make_engine(now: datetime = T0, **overrides) -> RiskEngine:
    cfg = BotSettings(risk=overrides).risk  # risk's section as the suite resolves it (freshness fallbacks)
    e = RiskEngine(cfg, load_markets(), list(PRICES), now)
    e.account_known = True
    e.set_kill_switch(False, True, now)
    feed(e, now)
    return e


def feed(e: RiskEngine, now: datetime, prices: dict[str, Decimal] | None = None) -> None:
    """Fresh ticks and heartbeats at `now`."""
    for s in ("market_data", "execution"):
        e.on_heartbeat(s, now)
    for sym, px in (prices or PRICES).items():
        e.on_tick(sym, px, now, now)


def signal(
    symbol: str = "BTC/USDT", side: str = "BUY", price: Decimal | None = None, ts: datetime = T0
) -> Signal:
    return Signal(
        ts=ts,
        symbol=symbol,
        side=side,
        probability=0.6,
        model_version="test",
        price=price if price is not None else PRICES[symbol],
    )


_trade = iter(range(1, 10**9))


def fill(
    symbol: str,
    side: str,
    qty: str,
    price: str,
    ts: datetime = T0,
    fee: str | None = None,
    reported: str = "0",
) -> Fill:
    q, p = Decimal(qty), Decimal(price)
    n = next(_trade)
    return Fill(
        ts=ts,
        client_order_id=f"c{n}",
        trade_id=f"t{n}",
        symbol=symbol,
        side=side,
        quantity=q,
        price=p,
        fee=Decimal(fee) if fee is not None else (q * p * Decimal("0.001")),
        fee_asset="USDT",
        realized_pnl_usdt=Decimal(reported),
    )


@pytest.fixture
def engine() -> RiskEngine:
    return make_engine()

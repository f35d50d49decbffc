"""Live mode: risk's equity, cash and positions are the exchange account's (the balances execution reconciles
from the fake Binance), never `starting_equity_usdt`; stale balances mean HOLD."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.fakes.binance import FakeBinance
from tests.helpers import wait_until
from tests.kit.risk import RISK_TEST_CONFIG, Collector, Feeder, kv

pytestmark = pytest.mark.integration
D = Decimal


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    f = FakeBinance.run_in_thread(balances={"USDT": "1000"})
    f.set_book("BTCUSDT", "59999", "60001", bid_qty="5", ask_qty="5")  # where the feeder prices BTC
    f.set_book("ETHUSDT", "2999", "3001", bid_qty="50", ask_qty="50")
    yield f
    f.close()


async def test_live_risk_sizes_exposes_and_draws_down_on_the_1000_usdt_exchange_account(services, bus, fake):
    services.configure(
        {
            **RISK_TEST_CONFIG,
            "mode": "live",
            "live": {"confirm": True},
            # configured (paper) equity stays at its 10,000 default: live risk must not use it
            "risk": {
                **RISK_TEST_CONFIG["risk"],
                "order_fraction_of_equity": "0.02",
                "account_stale_after_s": 4,
            },
            "execution": {
                "live_api_url": fake.http_url,
                "request_timeout_ms": 1500,
                "reconcile_interval_s": 1,
            },
        }
    )
    keys = {"BNML_LIVE__API_KEY": fake.api_key, "BNML_LIVE__API_SECRET": fake.secret}
    execution = services.start("execution", env=keys)
    services.start("risk", env=keys)
    seen = await Collector().attach(bus)
    async with Feeder(bus):
        v = await seen.ask_until(bus, lambda v: v.approved, timeout=30)
        notional = v.quantity * v.price_limit
        assert notional <= D("20.2"), f"sized {notional} USDT: not 2 % of the 1,000 USDT account"
        state = await wait_until(
            lambda: (
                (kv(services.database_url, "account_state") or {}).get("account_source") == "exchange"
                and kv(services.database_url, "account_state")
            ),
            timeout=15,
            message="risk's book from the exchange",
        )
        assert D("980") <= D(state["equity_usdt"]) <= D("1000") and D(state["peak_equity_usdt"]) <= D("1000")
        # the account loses 150 USDT at the exchange: the 10 % drawdown breaker trips on 1,000, not 10,000
        usdt, _ = fake.engine.balance("USDT")
        fake.engine.set_balance("USDT", usdt - D("150"))
        await wait_until(
            lambda: (
                "max_drawdown"
                in (kv(services.database_url, "account_state") or {}).get("active_breakers", {})
            ),
            timeout=20,
            message="max_drawdown tripped on the real account",
        )
        # execution stops reconciling: the balances go stale and the account is unknown (HOLD)
        execution.stop()
        refused = await seen.ask_until(bus, lambda v: "account_state_unknown" in v.reasons, timeout=30)
        assert not refused.approved

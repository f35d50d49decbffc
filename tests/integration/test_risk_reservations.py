"""Risk's reservations live until the order is terminal: limit orders resting in execution's paper book keep
counting against the per-symbol cap long after the verdict expired, and release when the order ends."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.helpers import wait_until
from tests.kit.risk import RISK_TEST_CONFIG, Collector, Feeder, count

pytestmark = pytest.mark.integration

CAP = Decimal("100")
LIMIT_TTL_S = 20.0
CONFIG = {
    **RISK_TEST_CONFIG,
    # 60 USDT per BUY (10,000 * 0.006) against a 100 USDT per-symbol cap; a limit at the last price, under the
    # ask (the feeder's spread), so every order rests in the paper book until its TTL
    "risk": {
        **RISK_TEST_CONFIG["risk"],
        "max_exposure_per_symbol_usdt": str(CAP),
        "order_fraction_of_equity": "0.006",
        "limit_slippage_bps": 0,
        "verdict_ttl_s": 0.5,
        "max_signal_age_s": 0.5,
        "duplicate_signal_window_s": 60,
    },
    "execution": {"order_type": "limit", "limit_order_ttl_s": LIMIT_TTL_S},
}


def _open_notional(database_url: str) -> Decimal:
    return Decimal(
        count(
            database_url,
            "SELECT coalesce(sum(quantity * price_limit), 0) FROM orders"
            " WHERE status IN ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', 'UNKNOWN')",
        )
    )


async def test_five_resting_60_usdt_buys_never_hold_more_than_the_100_usdt_cap(services, bus, database_url):
    services.configure(CONFIG)
    risk = services.start("risk")
    services.start("execution")
    seen = await Collector().attach(bus)
    async with Feeder(bus, spread=Decimal("5")):
        first = await seen.ask_until(bus, lambda v: v.approved)
        await wait_until(
            lambda: count(database_url, "SELECT count(*) FROM orders WHERE status = 'ACCEPTED'") >= 1,
            timeout=15,
            message="the first BUY resting in the paper book",
        )
        asks = [await seen.ask(bus) for _ in range(4)]
        # past the old reservation timer (verdict TTL + 5 s): the limits still rest, so still no more room
        await asyncio.sleep(6.5)
        asks += [await seen.ask(bus) for _ in range(5)]
        approved = [first] + [v for v in asks if v.approved]
        held = sum((v.quantity * v.price_limit for v in approved), Decimal("0"))
        assert held <= CAP, f"{len(approved)} BUYs approved for {held} USDT against a {CAP} USDT cap"
        assert _open_notional(database_url) <= CAP  # what actually rests at the (paper) exchange
        late = asks[4:]
        assert all(not v.approved and "max_exposure_symbol" in v.reasons for v in late), [
            v.reasons for v in late
        ]
        # risk restarts: the resting orders are reserved again from the journal (nothing in memory survives)
        risk.stop()
        await services.start("risk").wait_writer(bus)  # this run's heartbeat as the subscribed writer
        after = await seen.ask_until(  # past the start-up hold and the first fresh ticks: a sizing answer
            bus, lambda v: v.approved or "max_exposure_symbol" in v.reasons, timeout=20
        )
        assert not after.approved and "max_exposure_symbol" in after.reasons, after.reasons
        # positive control: once the resting orders expire (CANCELLED, nothing filled) the room comes back
        await wait_until(
            lambda: count(database_url, "SELECT count(*) FROM orders WHERE status = 'ACCEPTED'") == 0,
            timeout=LIMIT_TTL_S + 10,
            message="the resting orders expired",
        )
        again = await seen.ask_until(bus, lambda v: v.approved, timeout=10)
        assert again.quantity * again.price_limit <= Decimal("60.5")


async def test_verdicts_execution_never_journaled_release_their_reservation(services, bus, database_url):
    services.configure(CONFIG)
    services.start("risk")  # no execution: every approved verdict expires unjournaled
    seen = await Collector().attach(bus)
    async with Feeder(bus, spread=Decimal("5")):
        await seen.ask_until(bus, lambda v: v.approved)
        full = await seen.ask_until(bus, lambda v: "max_exposure_symbol" in v.reasons)
        assert not full.approved
        # past expiry + grace the journal has no order for them: the room comes back
        again = await seen.ask_until(bus, lambda v: v.approved, timeout=20)
        assert again.quantity * again.price_limit <= Decimal("60.5")
    assert count(database_url, "SELECT count(*) FROM orders") == 0

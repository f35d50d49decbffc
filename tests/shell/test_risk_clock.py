"""Risk's time-only breakers on the test clock: a heartbeat that stops trips `heartbeat_missing` exactly when the
runtime's clock passes the timeout, with no tick or heartbeat arriving to prompt it."""

from __future__ import annotations

from decimal import Decimal

from libs.common import subjects
from libs.common.contracts import BreakerTripped, Heartbeat, RiskVerdict, Signal, Tick, TradingStateChanged
from services.risk.shell import RiskService
from tests.helpers import publish_tick, wait_until
from tests.kit.harness import in_process

PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000")}
TIMEOUT_S = 600.0  # ten minutes: no wall-clock wait in this test could reach it


async def test_heartbeat_missing_trips_when_the_clock_passes_the_timeout_and_not_before(settings_for, bus):
    settings = settings_for(
        {
            "symbols": list(PRICES),
            "risk": {
                "heartbeat_timeout_s": TIMEOUT_S,
                "stale_after_s": 10 * TIMEOUT_S,
                "database_stale_after_s": 10 * TIMEOUT_S,  # the writer persists on wall-clock periods
            },
        }
    )
    verdicts: dict[str, RiskVerdict] = {}
    trips: list[BreakerTripped] = []

    async def on_verdict(v: RiskVerdict, _s: str) -> None:
        verdicts[v.signal_id] = v

    async def on_trip(t: BreakerTripped, _s: str) -> None:
        trips.append(t)

    await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
    await bus.subscribe(subjects.breaker_tripped(), BreakerTripped, on_trip)
    states: list[TradingStateChanged] = []

    async def on_state(s: TradingStateChanged, _s: str) -> None:
        states.append(s)

    await bus.subscribe(subjects.trading_state(), TradingStateChanged, on_state)

    async with in_process(RiskService(), settings) as shell:
        clock = shell.clock

        async def ask() -> RiskVerdict:
            sig = Signal(
                ts=clock.now(),
                symbol="BTC/USDT",
                side="BUY",
                probability=0.7,
                model_version="t",
                price=PRICES["BTC/USDT"],
            )
            await bus.publish(subjects.signal(sig.symbol), sig)
            return await wait_until(lambda: verdicts.get(sig.id), timeout=15, message="a verdict")

        # one round of heartbeats and ticks, stamped on the test clock, and then silence
        for svc in ("market_data", "execution"):
            await bus.publish(
                subjects.heartbeat(svc), Heartbeat(ts=clock.now(), service=svc, instance="t", uptime_s=1)
            )
        for sym, px in PRICES.items():
            await publish_tick(
                bus, Tick(ts=clock.now(), symbol=sym, bid=px, ask=px, last=px, volume=Decimal("1"))
            )

        async def approved_now() -> bool:
            return (await ask()).approved

        await wait_until(approved_now, timeout=20, message="an approval on fresh heartbeats and ticks")

        shell.advance(TIMEOUT_S - 1)  # just short of the timeout: still trading
        just_before = await ask()
        assert just_before.approved, just_before.reasons
        assert not any(t.breaker == "heartbeat_missing" for t in trips)

        shell.advance(2)  # past it: the breaker trips on time alone (the upkeep loop), no message prompts it
        await wait_until(
            lambda: any(t.breaker == "heartbeat_missing" for t in trips),
            timeout=15,
            message="heartbeat_missing tripped on the bus",
        )
        trip = next(t for t in trips if t.breaker == "heartbeat_missing")
        assert trip.effect == "REDUCING" and "601.0s ago" in trip.reason, trip
        await wait_until(
            lambda: any(s.state == "REDUCING" for s in states), timeout=15, message="REDUCING on the bus"
        )
        assert shell.app.engine.sm.state == "REDUCING"  # buys now stop; a sell would still pass

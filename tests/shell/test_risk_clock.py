"""Risk's time-only breakers on the test clock: silence trips them exactly when the runtime's clock passes their
threshold, with no message arriving to prompt it (the upkeep loop re-evaluates on time alone).

- heartbeats stop -> `heartbeat_missing` (REDUCING) once the clock passes `heartbeat_timeout_s`;
- ticks of one symbol stop while heartbeats go on -> `stale_data` holds that symbol past `stale_after_s`.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.clock import ManualClock
from libs.common.contracts import BreakerTripped, Heartbeat, RiskVerdict, Signal, Tick, TradingStateChanged
from services.risk.shell import RiskService
from tests.helpers import publish_tick, wait_until
from tests.kit.harness import in_process

pytestmark = pytest.mark.integration  # on this test's NATS and Postgres

PRICES = {"BTC/USDT": Decimal("60000"), "ETH/USDT": Decimal("3000")}
LIMIT_S = 600.0  # ten minutes: no wall-clock wait in these tests could reach it
FAR_S = 10 * LIMIT_S  # the thresholds a test does not exercise (the writer persists on wall-clock periods)


class Seen:
    """What risk publishes: verdicts by signal id, breaker trips, trading-state changes."""

    def __init__(self) -> None:
        self.verdicts: dict[str, RiskVerdict] = {}
        self.trips: list[BreakerTripped] = []
        self.states: list[TradingStateChanged] = []

    async def attach(self, bus: Bus) -> Seen:
        async def on_verdict(v: RiskVerdict, _s: str) -> None:
            self.verdicts[v.signal_id] = v

        async def on_trip(t: BreakerTripped, _s: str) -> None:
            self.trips.append(t)

        async def on_state(s: TradingStateChanged, _s: str) -> None:
            self.states.append(s)

        await bus.subscribe(subjects.ALL_VERDICTS, RiskVerdict, on_verdict)
        await bus.subscribe(subjects.breaker_tripped(), BreakerTripped, on_trip)
        await bus.subscribe(subjects.trading_state(), TradingStateChanged, on_state)
        return self

    def tripped(self, breaker: str, symbol: str | None = None, since: int = 0) -> BreakerTripped | None:
        """The first trip of `breaker` on `symbol` among the trips seen from index `since` on (at start risk
        holds every symbol until its first tick: those trips are not the ones under test)."""
        return next((t for t in self.trips[since:] if t.breaker == breaker and t.symbol == symbol), None)

    async def ask(self, bus: Bus, clock: ManualClock, symbol: str = "BTC/USDT") -> RiskVerdict:
        """A BUY signal made now on the test clock, and risk's verdict on it."""
        sig = Signal(
            ts=clock.now(),
            symbol=symbol,
            side="BUY",
            probability=0.7,
            model_version="t",
            price=PRICES[symbol],
        )
        await bus.publish(subjects.signal(sig.symbol), sig)
        return await wait_until(lambda: self.verdicts.get(sig.id), timeout=30, message="a verdict")

    async def approved(self, bus: Bus, clock: ManualClock, symbol: str = "BTC/USDT") -> None:
        async def ok() -> bool:
            return (await self.ask(bus, clock, symbol)).approved

        await wait_until(ok, timeout=45, message=f"an approval for {symbol} on fresh data")


async def beat(bus: Bus, clock: ManualClock) -> None:
    for svc in ("market_data", "execution"):
        await bus.publish(
            subjects.heartbeat(svc), Heartbeat(ts=clock.now(), service=svc, instance="t", uptime_s=1)
        )


async def ticks(bus: Bus, clock: ManualClock, symbols: list[str]) -> None:
    for sym in symbols:
        px = PRICES[sym]
        await publish_tick(
            bus, Tick(ts=clock.now(), symbol=sym, bid=px, ask=px, last=px, volume=Decimal("1"))
        )


async def test_heartbeat_missing_trips_when_the_clock_passes_the_timeout_and_not_before(settings_for, bus):
    settings = settings_for(
        {
            "symbols": list(PRICES),
            "risk": {"heartbeat_timeout_s": LIMIT_S, "stale_after_s": FAR_S, "database_stale_after_s": FAR_S},
        }
    )
    seen = await Seen().attach(bus)
    async with in_process(RiskService(), settings) as shell:
        clock = shell.clock
        await beat(bus, clock)  # one round of heartbeats and ticks, stamped on the test clock, then silence
        await ticks(bus, clock, list(PRICES))
        await seen.approved(bus, clock)

        shell.advance(LIMIT_S - 1)  # just short of the timeout: still trading
        just_before = await seen.ask(bus, clock)
        assert just_before.approved, just_before.reasons
        assert seen.tripped("heartbeat_missing") is None

        shell.advance(2)  # past it: the breaker trips on time alone (the upkeep loop), no message prompts it
        await wait_until(
            lambda: seen.tripped("heartbeat_missing"),
            timeout=30,
            message="heartbeat_missing tripped on the bus",
        )
        trip = seen.tripped("heartbeat_missing")
        assert trip is not None and trip.effect == "REDUCING" and "601.0s ago" in trip.reason, trip
        await wait_until(
            lambda: any(s.state == "REDUCING" for s in seen.states), timeout=30, message="REDUCING on the bus"
        )
        assert shell.app.p.engine.sm.state == "REDUCING"  # buys now stop; a sell would still pass


async def test_stale_data_holds_the_silent_symbol_once_the_clock_passes_stale_after(settings_for, bus):
    settings = settings_for(
        {
            "symbols": list(PRICES),
            "risk": {"heartbeat_timeout_s": FAR_S, "stale_after_s": LIMIT_S, "database_stale_after_s": FAR_S},
        }
    )
    seen = await Seen().attach(bus)
    async with in_process(RiskService(), settings) as shell:
        clock = shell.clock
        await beat(bus, clock)
        await ticks(bus, clock, list(PRICES))
        await seen.approved(bus, clock, "BTC/USDT")
        await seen.approved(bus, clock, "ETH/USDT")

        # ETH keeps ticking, BTC falls silent
        mark = len(seen.trips)
        shell.advance(LIMIT_S - 1)
        await ticks(bus, clock, ["ETH/USDT"])
        assert (await seen.ask(bus, clock, "BTC/USDT")).approved  # 599 s since its last tick: not yet stale
        shell.advance(2)
        await ticks(bus, clock, ["ETH/USDT"])
        await wait_until(
            lambda: seen.tripped("stale_data", "BTC/USDT", mark), timeout=30, message="stale_data on BTC/USDT"
        )
        trip = seen.tripped("stale_data", "BTC/USDT", mark)
        assert trip is not None and trip.effect == "HOLD_SYMBOL" and "601.0s ago" in trip.reason, trip
        btc = await seen.ask(bus, clock, "BTC/USDT")
        assert not btc.approved, btc
        eth = await seen.ask(bus, clock, "ETH/USDT")  # the symbol that kept ticking still trades
        assert eth.approved, eth.reasons
        assert seen.tripped("stale_data", "ETH/USDT", mark) is None

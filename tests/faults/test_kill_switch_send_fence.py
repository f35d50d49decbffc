"""Issue 16.1: no order request reaches the exchange after execution's latched notice.

Between the last gate check and the request leaving, ccxt's rate limiter and the HTTP connect yield (and
the paper book sleeps its simulated latency). Counted where the requests arrive: the fake Binance's own
request log (wall-clock arrival times) and the paper exchange's own record (`paper_requests`), never
the journal. Each round: verdicts in flight, a random pause, an engage; from its latched notice until the
next release, no order request may arrive.
"""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from libs.common import subjects
from tests.fakes.binance import FakeBinance
from tests.kit.execution import (
    EXECUTION_CONFIG,
    PRICE,
    Acks,
    kill_switch,
    make_verdict,
    query,
    stamp_risk_writer,
    ticking,
)

pytestmark = pytest.mark.faults

LIVE_ROUNDS = 1000
PAPER_ROUNDS = 300
IN_FLIGHT = re.compile(r"(\d+) order request\(s\) already past the gate")


async def _race(
    bus, acks: Acks, notices: Acks, rounds: int, seed: int, risk_epoch: int = 0
) -> tuple[list[tuple], int]:
    """Run the rounds; returns the (notice ts, release ts) windows and how many notices waited for a send."""
    rng = random.Random(seed)
    windows: list[tuple[datetime, datetime]] = []
    waited = 0
    cmd = await kill_switch(bus, "release", "race start")
    await acks.wait(cmd.id, ("execution",))
    for i in range(rounds):
        in_flight = [
            asyncio.create_task(
                bus.publish(
                    subjects.verdict("BTC/USDT"),
                    make_verdict("BUY" if (i + k) % 2 else "SELL", risk_epoch=risk_epoch),
                )
            )
            for k in range(rng.randint(1, 3))
        ]
        await asyncio.sleep(rng.uniform(0, 0.008))  # the race: the engage lands at a random point among them
        engage = await kill_switch(bus, "engage", f"race {i}")
        notice = (await notices.wait(engage.id, ("execution",)))["execution"]
        m = IN_FLIGHT.search(notice.detail)
        waited += bool(m and int(m.group(1)))
        await asyncio.gather(*in_flight)
        await asyncio.sleep(rng.uniform(0, 0.003))  # verdicts still arriving while engaged
        release = await kill_switch(bus, "release", f"race {i} over")
        windows.append((notice.ts, release.ts))
        await acks.wait(release.id, ("execution",))
    return windows, waited


def _inside(ts: datetime, windows: list[tuple[datetime, datetime]]) -> bool:
    return any(lo < ts < hi for lo, hi in windows)


async def test_live_no_order_request_reaches_the_exchange_after_the_latched_notice(
    services, bus, database_url
):
    fake = FakeBinance.run_in_thread(balances={"USDT": "10000000", "BTC": "1000"})
    try:
        fake.set_book(
            "BTCUSDT", PRICE - Decimal("0.5"), PRICE + Decimal("0.5"), bid_qty="1000", ask_qty="1000"
        )
        services.configure(
            {
                "mode": "live",
                "live": {"confirm": True},
                "symbols": ["BTC/USDT"],
                # a fast limiter (the fake answers in a millisecond) that reconcile, every 0.25 s, keeps drained:
                # order requests wait in it behind reconcile's look-ups
                "execution": {
                    "live_api_url": fake.http_url,
                    "request_timeout_ms": 3000,
                    "live_rate_limit_ms": 0.5,
                    "reconcile_interval_s": 0.25,
                    "cancel_retry_interval_s": 0.05,
                    "unknown_backoff_max_s": 0.5,
                },
            }
        )
        services.extra_env.update(BNML_LIVE__API_KEY=fake.api_key, BNML_LIVE__API_SECRET=fake.secret)
        epoch = stamp_risk_writer(database_url)  # the test plays a fenced risk writer (live refuses epoch 0)
        execution = services.start("execution")
        acks = await Acks().attach(bus)
        notices = await Acks(subjects.kill_switch_latched("execution")).attach(bus)
        async with ticking(bus, every_s=0.05):
            windows, waited = await _race(bus, acks, notices, LIVE_ROUNDS, seed=16, risk_epoch=epoch)
        posts = [r for r in list(fake.requests) if r.method == "POST" and r.path == "/api/v3/order"]
        late = [r for r in posts if _inside(datetime.fromtimestamp(r.received_at, UTC), windows)]
        assert execution.alive, execution.logs()[-3000:]
        assert len(posts) > LIVE_ROUNDS // 10, (
            f"only {len(posts)} orders reached the fake: the race exercised nothing"
        )
        assert not late, (
            f"{len(late)} of {len(posts)} order requests reached the exchange after the latched notice"
            f" (first: {late[0]})"
        )
        assert waited > 0, "no notice ever had a send in flight: the race never hit the gap"
        assert not fake.internal_errors, fake.internal_errors
    finally:
        fake.close()


async def test_paper_with_latency_no_order_reaches_the_book_after_the_latched_notice(
    services, bus, database_url
):
    services.configure(
        {**EXECUTION_CONFIG, "execution": {**EXECUTION_CONFIG["execution"], "paper_latency_ms": 4}}
    )
    services.start("execution")
    acks = await Acks().attach(bus)
    notices = await Acks(subjects.kill_switch_latched("execution")).attach(bus)
    async with ticking(bus, every_s=0.05):
        windows, waited = await _race(bus, acks, notices, PAPER_ROUNDS, seed=61)
    received = [ts for (ts,) in query(database_url, "SELECT received_at FROM paper_requests")]
    late = [ts for ts in received if _inside(ts, windows)]
    assert len(received) > PAPER_ROUNDS // 10, f"only {len(received)} orders reached the paper book"
    assert not late, f"{len(late)} of {len(received)} paper order requests arrived after the latched notice"
    assert waited > 0, "no notice ever had a send in flight: the race never hit the latency"

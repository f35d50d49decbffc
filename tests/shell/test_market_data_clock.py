"""market_data's staleness rule on the test clock: symbols that ticked once and then fell silent are fresh up
to `stale_after_s` and stale past it, and the shell says so as the rules decide: a status per symbol on
md.status, one SEV-2 alert, a degraded health."""

from __future__ import annotations

import pytest

from libs.common import subjects
from libs.common.contracts import Alert, MarketStatus
from services.market_data.shell import MarketDataService
from tests.helpers import recorded, wait_until
from tests.kit.harness import in_process

pytestmark = pytest.mark.integration  # on this test's NATS and Postgres

SYMBOLS = 3


async def test_symbols_silent_past_stale_after_on_the_clock_turn_stale_alerted_once_and_degraded(
    settings_for, bus
):
    # the synthetic source sends one step (a tick of every symbol), then nothing: only the clock moves
    settings = settings_for(
        {
            "market_data": {
                "stale_after_s": 10,
                "status_interval_s": 1,
                "metrics_port": 0,
                "synthetic": {"symbols_count": SYMBOLS, "max_steps": 1},
            }
        }
    )
    statuses = await recorded(bus, subjects.ALL_STATUS, MarketStatus)
    alerts = await recorded(bus, subjects.ALL_ALERTS, Alert)
    async with in_process(MarketDataService(), settings) as shell:
        app = shell.app
        await wait_until(
            lambda: app.tracker.counts() == (SYMBOLS, 0), timeout=30, message="every symbol fresh"
        )
        assert app.health()[0] == "ok"

        # positive control of "still fresh": 9 s on, the next snapshot (due every second of the test clock)
        # says fresh for every symbol, so a status pass judged them at that time
        shell.advance(9)
        seen = len(statuses)
        await wait_until(
            lambda: (
                len({m.symbol for m in statuses[seen:] if m.status == "fresh" and m.age_s >= 9}) == SYMBOLS
            ),
            timeout=30,
            message="a snapshot 9 s on: every symbol still fresh",
        )
        assert not [m for m in statuses[seen:] if m.status == "stale"] and not alerts
        assert app.health()[0] == "ok"

        shell.advance(2)  # 11 s since the only tick: past stale_after_s
        seen = len(statuses)
        await wait_until(
            lambda: {m.symbol for m in statuses[seen:] if m.status == "stale"} == set(app.tracker.symbols),
            timeout=30,
            message="every symbol published stale",
        )
        await wait_until(
            lambda: [a for a in alerts if a.dedup_key == "market_data:stale"], timeout=30, message="the alert"
        )
        status, detail = app.health()
        assert status == "degraded" and f"{SYMBOLS}/{SYMBOLS} symbols stale" in detail, detail

        shell.advance(5)  # still stale: the alert stands, it is not raised again
        seen = len(statuses)
        await wait_until(
            lambda: len({m.symbol for m in statuses[seen:] if m.status == "stale"}) == SYMBOLS,
            timeout=30,
            message="the next snapshot: still stale",
        )
        stale_alerts = [a for a in alerts if a.dedup_key == "market_data:stale"]
        assert len(stale_alerts) == 1 and stale_alerts[0].severity == "SEV-2", stale_alerts

"""The recorder: what crosses the bus lands in Postgres, incidents open, and a postmortem can be written."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import httpx
import psycopg

from libs.common import subjects
from libs.common.contracts import (
    Alert,
    BreakerTripped,
    MarketStatus,
    OrderEvent,
    RiskVerdict,
    TradingStateChanged,
    utcnow,
)
from tests.helpers import ROOT, VIEWER_TOKEN, ops_api_url, wait_until


def q(url: str, sql: str, params=()):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def test_bus_events_are_recorded_and_open_incidents_with_a_postmortem(
    services, bus, database_url, tmp_path
):
    services.configure(
        {
            "monitoring": {"incidents": {"order_loop_max_orders": 5, "order_loop_window_s": 60}},
            "storage": {"backup": {"enabled": False}},
        }
    )
    ops = services.start("ops_api")
    url = ops_api_url(ops)
    now = utcnow()
    for status in ("fresh", "stale", "stale", "fresh"):  # two transitions after the first status
        await bus.publish(
            subjects.market_status("BTC/USDT"),
            MarketStatus(ts=utcnow(), symbol="BTC/USDT", status=status, age_s=1.0),
        )
    await bus.publish(
        subjects.breaker_tripped(),
        BreakerTripped(ts=now, breaker="volatility", effect="REDUCING", reason="ratio 3.2"),
    )
    await bus.publish(
        subjects.trading_state(),
        TradingStateChanged(ts=now, state="REDUCING", previous="ACTIVE", reason="volatility"),
    )
    for i in range(3):
        await bus.publish(
            subjects.verdict("ETH/USDT"),
            RiskVerdict(
                ts=now,
                signal_id=f"signal-{i:04d}",
                symbol="ETH/USDT",
                side="BUY",
                approved=False,
                quantity=Decimal(0),
                price_limit=Decimal(0),
                reasons=["max_notional: 150 > 100"],
                expires_at=now + timedelta(seconds=2),
            ),
        )
    for i in range(7):
        await bus.publish(
            subjects.order("SOL/USDT"),
            OrderEvent(
                ts=utcnow(),
                client_order_id=f"loop-{i}",
                symbol="SOL/USDT",
                side="BUY",
                status="SUBMITTED",
                quantity=Decimal("1"),
            ),
        )
    await bus.publish(
        subjects.alert("SEV-1"),
        Alert(
            ts=utcnow(),
            severity="SEV-1",
            source="execution",
            title="journal/exchange mismatch on c-77",
            dedup_key="execution:mismatch:c-77",
        ),
    )

    await wait_until(
        lambda: q(database_url, "SELECT count(*) FROM heartbeat_minutes WHERE service = 'ops_api'")[0][0],
        timeout=20,
        message="ops_api's own heartbeats",
    )
    await wait_until(
        lambda: (
            [r[0] for r in q(database_url, "SELECT status FROM market_status_events ORDER BY id")]
            == ["fresh", "stale", "fresh"]
        ),
        message="only transitions recorded",
    )
    await wait_until(
        lambda: q(database_url, "SELECT breaker, effect FROM breaker_log") == [("volatility", "REDUCING")],
        message="breaker event",
    )
    await wait_until(
        lambda: q(database_url, "SELECT state FROM trading_state_log") == [("REDUCING",)],
        message="trading state",
    )
    await wait_until(
        lambda: (
            q(database_url, "SELECT reason, sum(n)::int FROM refusal_minutes GROUP BY reason")
            == [("max_notional", 3)]
        ),
        timeout=20,
        message="refusals flushed",
    )
    await wait_until(
        lambda: (
            {r[0] for r in q(database_url, "SELECT kind FROM incidents WHERE severity = 'SEV-1'")}
            == {"order_loop", "journal_mismatch"}
        ),
        timeout=20,
        message="SEV-1 incidents",
    )

    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        inc = (
            await c.get(
                "/incidents",
                params={"severity": "SEV-1"},
                headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
            )
        ).json()["items"]
        assert len(inc) == 2
        today = (
            await c.get(
                f"/dod/daily/{now.date().isoformat()}", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
            )
        ).json()
        assert today["checks"]["no_sev1_incident"]["passed"] is False
        assert today["checks"]["no_unresolved_mismatch"]["passed"] is False
        assert today["figures"]["breaker_trips"] == {"volatility": 1}

    loop_id = q(database_url, "SELECT id FROM incidents WHERE kind = 'order_loop'")[0][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(ROOT), BNML_CONFIG=str(services.config_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bnml.cli",
        "incident",
        "new",
        "--id",
        str(loop_id),
        "--out",
        str(tmp_path / "pm"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    md = next((tmp_path / "pm").glob(f"*-incident-{loop_id}.md")).read_text()
    assert "order loop on SOL/USDT" in md and "## Preventive action" in md
    assert (
        "tripped volatility: ratio 3.2" in md and "BTC/USDT stale" in md
    )  # surrounding events in the timeline


async def test_alerts_and_breakers_raised_while_ops_api_is_down_are_recorded_when_it_is_back(
    services, bus, database_url
):
    services.configure({"storage": {"backup": {"enabled": False}}})
    first = services.start("ops_api")
    first.stop()
    await bus.publish(
        subjects.alert("SEV-2"),
        Alert(ts=utcnow(), severity="SEV-2", source="risk", title="raised while ops_api was down"),
    )
    await bus.publish(
        subjects.breaker_tripped(),
        BreakerTripped(ts=utcnow(), breaker="drift", effect="HALTED", reason="drift detected"),
    )
    services.start("ops_api")
    await wait_until(
        lambda: q(database_url, "SELECT title FROM alerts") == [("raised while ops_api was down",)],
        timeout=30,
        message="the alert recorded after restart",
    )
    await wait_until(
        lambda: q(database_url, "SELECT breaker FROM breaker_log") == [("drift",)],
        timeout=30,
        message="the breaker recorded after restart",
    )

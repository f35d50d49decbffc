"""The kill switch through the HTTP API, acknowledged by the real risk and execution processes."""

from __future__ import annotations

import re

import httpx
import psycopg

from libs.common.kill_switch import read_standing
from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN, wait_until

OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


async def test_engage_over_http_is_acknowledged_by_risk_and_execution_and_release_without_execution_says_so(
        services, bus, database_url, tmp_path):
    services.configure({"ops_api": {"port": 0, "kill_switch_ack_timeout_s": 5},
                        "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "b")}}})
    ops = services.start("ops_api")
    services.start("risk")
    execution = services.start("execution")
    url = re.search(r'"url": "(http://[^"]+)"', ops.logs()).group(1)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await wait_until(lambda: _both_up(c), timeout=30,
                         message="risk and execution heartbeats seen by ops_api")
        r = await c.post("/kill-switch", json={"action": "engage", "reason": "SEV-1 drill", "actor": "alice"},
                         headers={**OP, "Idempotency-Key": "drill-1"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["acknowledged_by"] == ["execution", "risk"] and body["missing"] == []
        assert body["acks"]["execution"]["engaged"] is True and body["acks"]["execution"]["open_orders"] == 0
        # execution said it latched before it confirmed its sweep
        assert 0 < body["latched_ms"]["execution"] <= body["ack_ms"]["execution"]
        assert "alice" in body["actor"]
        again = await c.post("/kill-switch", json={"action": "engage", "reason": "SEV-1 drill", "actor": "alice"},
                             headers={**OP, "Idempotency-Key": "drill-1"})
        assert again.json()["command_id"] == body["command_id"] and again.json()["replayed"] is True
        status = (await c.get("/status", headers=VIEW)).json()
        assert status["kill_switch"]["engaged"] is True and status["trading_state"] == "HALTED"
        await wait_until(lambda: count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE action = 'engage'")
                         == 1, message="risk's audit row")

        execution.stop()
        r = await c.post("/kill-switch", json={"action": "release", "reason": "drill over"}, headers=OP)
        assert r.status_code == 202
        assert r.json()["missing"] == ["execution"] and "the command stands" in r.json()["detail"]
    standing = await read_standing(bus)
    assert standing.action == "release" and standing.id == r.json()["command_id"]
    assert count(database_url, "SELECT count(*) FROM api_audit WHERE action LIKE 'kill_switch.%%'") == 2
    await wait_until(lambda: count(database_url, "SELECT count(*) FROM incidents WHERE kind = 'kill_switch'"
                                                 " AND resolved_at IS NOT NULL") == 1, message="incident resolved")


async def _both_up(c: httpx.AsyncClient) -> bool:
    svcs = (await c.get("/health")).json()["services"]
    return svcs["risk"]["status"] != "down" and svcs["execution"]["status"] != "down"

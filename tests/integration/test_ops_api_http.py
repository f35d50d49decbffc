"""ops_api over HTTP on real NATS + Postgres: roles, throttling, audit rows, validation, journal reads."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from libs.common import subjects
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, utcnow
from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN, ops_api_url, wait_until

OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def rows(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def ops(services, tmp_path):
    services.configure(
        {
            "ops_api": {"auth_max_failures": 3, "auth_block_s": 30},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "backups")}},
        }
    )
    proc = services.start("ops_api")
    return ops_api_url(proc)


async def test_status_keeps_the_interfaces_shape_and_needs_a_token(ops, bus):
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        assert (await c.get("/status")).status_code == 401
        r = await c.get("/status", headers=VIEW)
        assert r.status_code == 200
        body = r.json()
        assert set(body) >= {"mode", "trading_state", "kill_switch", "counts", "services", "urls"}
        assert set(body["counts"]) == {
            "ticks",
            "signals",
            "verdicts_approved",
            "verdicts_refused",
            "orders",
            "fills",
            "open_orders",
            "dlq",
        }
        assert set(body["kill_switch"]) == {
            "engaged",
            "known",
            "since",
            "reason",
        }  # docs/interfaces.md, second wave
        health = (await c.get("/health")).json()
        assert set(health["services"]) == {"market_data", "signal", "risk", "execution", "ops_api"}
        assert (await c.get("/openapi.json")).json()["info"]["title"] == "BN-ML ops API"


async def test_viewer_cannot_engage_and_every_refusal_is_audited(ops, database_url, bus):
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        r = await c.post("/kill-switch", json={"action": "engage", "reason": "x"}, headers=VIEW)
        assert r.status_code == 403
        r = await c.post(
            "/kill-switch",
            json={"action": "engage", "reason": "x"},
            headers={"Authorization": "Bearer wrong-token-123456"},
        )
        assert r.status_code == 401
    audit = rows(database_url, "SELECT role, action, outcome, status_code FROM api_audit ORDER BY id")
    assert audit == [
        ("viewer", "POST /kill-switch", "refused", 403),
        ("none", "POST /kill-switch", "refused", 401),
    ]
    with pytest.raises(psycopg.errors.RaiseException):
        rows(database_url, "DELETE FROM api_audit")


async def test_repeated_wrong_tokens_are_throttled_even_with_the_right_one_after(ops, database_url, bus):
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        codes = [
            (await c.get("/status", headers={"Authorization": f"Bearer guess-{i}"})).status_code
            for i in range(3)
        ]
        assert codes == [401, 401, 401]
        r = await c.get("/status", headers=VIEW)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    outcomes = [o for (o,) in rows(database_url, "SELECT outcome FROM api_audit ORDER BY id")]
    assert outcomes == ["refused", "refused", "refused", "throttled"]


async def test_invalid_kill_switch_input_names_the_field_and_never_reaches_the_bus(ops, bus, database_url):
    seen: list[KillSwitchCommand] = []

    async def on_cmd(cmd, subject):
        seen.append(cmd)

    await bus.subscribe(subjects.kill_switch(), KillSwitchCommand, on_cmd)
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        r = await c.post("/kill-switch", json={"action": "explode", "reason": "x"}, headers=OP)
        assert r.status_code == 422 and r.json()["field"] == "action"
        r = await c.post("/kill-switch", json={"action": "engage", "reason": ""}, headers=OP)
        assert r.status_code == 422 and r.json()["field"] == "reason"
        r = await c.post(
            "/kill-switch", json={"action": "release", "reason": "ok", "flatten": True}, headers=OP
        )
        assert r.status_code == 422 and "flatten" in r.json()["detail"]
        r = await c.post("/kill-switch", json={"action": "engage", "reason": "x", "force": 1}, headers=OP)
        assert r.status_code == 422 and r.json()["field"] == "force"
        r = await c.get("/orders", params={"limit": 0}, headers=VIEW)
        assert r.status_code == 422 and r.json()["field"] == "limit"
        r = await c.get("/dod/daily/2026-13-45", headers=VIEW)
        assert r.status_code == 422 and r.json()["field"] == "day"
        # a valid command after the invalid ones is the only one on the bus
        r = await c.post("/kill-switch", json={"action": "engage", "reason": "valid"}, headers=OP)
        assert r.status_code in (200, 202)
    await wait_until(lambda: len(seen) == 1, message="the valid command on the bus")
    assert seen[0].reason == "valid"
    outcomes = [
        o
        for (o,) in rows(
            database_url, "SELECT outcome FROM api_audit WHERE action LIKE '%%kill%%' ORDER BY id"
        )
    ]
    assert outcomes.count("invalid_input") == 4 and outcomes[-1] == "unacknowledged"


async def test_kill_switch_answers_with_who_acknowledged_and_is_idempotent(ops, bus, database_url):
    """Acks come from the test side here; the real risk+execution path is in test_ops_api_kill_switch."""
    published: list[KillSwitchCommand] = []

    async def ack_as_both(cmd: KillSwitchCommand, subject: str) -> None:
        published.append(cmd)
        for svc in ("risk", "execution"):
            await bus.publish(
                subjects.kill_switch_ack(svc),
                KillSwitchAcknowledged(
                    ts=utcnow(), command_id=cmd.id, service=svc, engaged=cmd.action == "engage", open_orders=0
                ),
            )

    await bus.subscribe(subjects.kill_switch(), KillSwitchCommand, ack_as_both)
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        headers = {**OP, "Idempotency-Key": "incident-42"}
        r1 = await c.post("/kill-switch", json={"action": "engage", "reason": "SEV-1 drill"}, headers=headers)
        assert r1.status_code == 200, r1.text
        a = r1.json()
        assert a["acknowledged_by"] == ["execution", "risk"] and a["missing"] == []
        assert a["elapsed_ms"] >= max(a["ack_ms"].values()) > 0
        r2 = await c.post("/kill-switch", json={"action": "engage", "reason": "SEV-1 drill"}, headers=headers)
        assert r2.json()["command_id"] == a["command_id"] and r2.json()["replayed"] is True
        ks = (await c.get("/kill-switch", headers=VIEW)).json()  # the answer came once ops_api's view had it
        assert ks["engaged"] is True and ks["reason"] == "SEV-1 drill"
    assert len(published) == 1
    await wait_until(
        lambda: rows(database_url, "SELECT count(*) FROM incidents WHERE kind = 'kill_switch'")[0][0] == 1,
        message="kill switch incident",
    )
    (sev,) = rows(database_url, "SELECT severity FROM incidents WHERE kind = 'kill_switch'")[0]
    assert sev == "SEV-1"


async def test_orders_and_fills_filter_and_paginate(ops, database_url, bus):
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(5):
            conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, created_at)"
                " VALUES (%s, %s, %s, 'BUY', 0.01, %s, now() - %s * interval '1 minute')",
                (
                    f"c{i}",
                    f"v{i}",
                    "BTC/USDT" if i % 2 == 0 else "ETH/USDT",
                    "FILLED" if i < 4 else "REJECTED",
                    i,
                ),
            )
            conn.execute(
                "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee,"
                " fee_asset, ts) VALUES ('paper', %s, %s, %s, 'BUY', 0.01, 50000.1, 0.5, 'USDT', now())",
                (f"t{i}", f"c{i}", "BTC/USDT" if i % 2 == 0 else "ETH/USDT"),
            )
    async with httpx.AsyncClient(base_url=ops, timeout=10) as c:
        page1 = (await c.get("/orders", params={"limit": 2}, headers=VIEW)).json()
        assert [o["client_order_id"] for o in page1["items"]] == ["c0", "c1"] and page1["next_offset"] == 2
        page3 = (await c.get("/orders", params={"limit": 2, "offset": 4}, headers=VIEW)).json()
        assert [o["client_order_id"] for o in page3["items"]] == ["c4"] and page3["next_offset"] is None
        btc = (await c.get("/orders", params={"symbol": "BTC/USDT"}, headers=VIEW)).json()["items"]
        assert {o["client_order_id"] for o in btc} == {"c0", "c2", "c4"}
        rejected = (await c.get("/orders", params={"status": "REJECTED"}, headers=VIEW)).json()["items"]
        assert [o["client_order_id"] for o in rejected] == ["c4"]
        fills = (await c.get("/fills", params={"symbol": "ETH/USDT"}, headers=VIEW)).json()["items"]
        assert len(fills) == 2 and fills[0]["price"] == "50000.1"  # money stays a string
        assert (await c.get("/orders", params={"status": "LOST"}, headers=VIEW)).json()["field"] == "status"


def test_a_placeholder_token_refuses_to_start_naming_the_key(services):
    proc = services.start("ops_api", wait=False, env={"BNML_OPS_API__OPERATOR_TOKEN": "change-me-operator"})
    assert proc.proc.wait(60) == 2
    assert "ops_api.operator_token" in proc.logs() and "change-me-operator" not in proc.logs()

"""The kill switch through the HTTP API, acknowledged by the real risk and execution processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import nats
import psycopg

from libs.common import subjects
from libs.common.contracts import Alert, KillSwitchCommand, utcnow
from libs.common.kill_switch import check_authority, read_standing, sign
from tests.helpers import OPERATOR_TOKEN, RELEASE_KEY, ROOT, VIEWER_TOKEN, ops_api_url, wait_until
from tests.kit.execution import EXECUTION_CONFIG, Acks, kill_switch, make_verdict, ticking

OP = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


async def test_engage_over_http_is_acknowledged_by_risk_and_execution_and_release_without_execution_says_so(
    services, bus, database_url, tmp_path
):
    services.configure(
        {
            "ops_api": {"kill_switch_ack_timeout_s": 5},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "b")}},
        }
    )
    ops = services.start("ops_api")
    services.start("risk")
    execution = services.start("execution")
    url = ops_api_url(ops)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await wait_until(
            lambda: _both_up(c), timeout=30, message="risk and execution heartbeats seen by ops_api"
        )
        r = await c.post(
            "/kill-switch",
            json={"action": "engage", "reason": "SEV-1 drill", "actor": "alice"},
            headers={**OP, "Idempotency-Key": "drill-1"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["acknowledged_by"] == ["execution", "risk"] and body["missing"] == []
        assert body["acks"]["execution"]["engaged"] is True and body["acks"]["execution"]["open_orders"] == 0
        # execution said it latched before it confirmed its sweep
        assert 0 < body["latched_ms"]["execution"] <= body["ack_ms"]["execution"]
        assert "alice" in body["actor"]
        again = await c.post(
            "/kill-switch",
            json={"action": "engage", "reason": "SEV-1 drill", "actor": "alice"},
            headers={**OP, "Idempotency-Key": "drill-1"},
        )
        assert again.json()["command_id"] == body["command_id"] and again.json()["replayed"] is True
        status = (await c.get("/status", headers=VIEW)).json()
        assert status["kill_switch"]["engaged"] is True and status["trading_state"] == "HALTED"
        await wait_until(
            lambda: (
                count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE action = 'engage'") == 1
            ),
            message="risk's audit row",
        )

        execution.stop()
        r = await c.post("/kill-switch", json={"action": "release", "reason": "drill over"}, headers=OP)
        assert r.status_code == 202
        assert r.json()["missing"] == ["execution"] and "the command stands" in r.json()["detail"]
    standing = await read_standing(bus)
    assert standing.action == "release" and standing.id == r.json()["command_id"]
    assert count(database_url, "SELECT count(*) FROM api_audit WHERE action LIKE 'kill_switch.%%'") == 2
    await wait_until(
        lambda: (
            count(
                database_url,
                "SELECT count(*) FROM incidents WHERE kind = 'kill_switch' AND resolved_at IS NOT NULL",
            )
            == 1
        ),
        message="incident resolved",
    )


async def _both_up(c: httpx.AsyncClient) -> bool:
    svcs = (await c.get("/health")).json()["services"]
    return svcs["risk"]["status"] != "down" and svcs["execution"]["status"] != "down"


async def _ops_risk_execution(services, tmp_path) -> str:
    services.configure(
        {
            **EXECUTION_CONFIG,
            "ops_api": {"kill_switch_ack_timeout_s": 5},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "b")}},
        }
    )
    ops = services.start("ops_api")
    services.start("risk")
    services.start("execution")
    return ops_api_url(ops)


async def _alerts(bus) -> list[Alert]:
    """Every alert published from now on."""
    got: list[Alert] = []

    async def on_alert(a: Alert, subject: str) -> None:
        got.append(a)

    await bus.subscribe(subjects.ALL_ALERTS, Alert, on_alert)
    return got


def _orders_for(url: str, verdict_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE verdict_id = %s", (verdict_id,)).fetchone()[0]


async def test_a_release_published_on_nats_without_operator_authority_changes_nothing(
    services, bus, database_url, tmp_path
):
    url = await _ops_risk_execution(services, tmp_path)
    acks = await Acks().attach(bus)
    alerts = await _alerts(bus)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c, ticking(bus):
        await wait_until(lambda: _both_up(c), timeout=30, message="risk and execution up")
        engage = await kill_switch(bus, "engage", "halt before the forged release")
        await acks.wait(engage.id, ("risk", "execution"))
        # anyone with bus credentials: an unsigned release, then one signed with the wrong key
        forged = await kill_switch(bus, "release", "forged: no authority", signed=False)
        got = await acks.wait(forged.id, ("risk", "execution"))
        assert all(a.engaged and "refused" in a.detail for a in got.values()), got
        wrong = sign(
            KillSwitchCommand(ts=utcnow(), action="release", reason="forged: wrong key", actor="mallory"),
            "not-the-operators-release-key-at-all",
        )
        await bus.publish(subjects.kill_switch(), wrong)
        await acks.wait(wrong.id, ("risk", "execution"))
        blocked = make_verdict(epoch_of=database_url)
        await bus.publish(subjects.verdict(blocked.symbol), blocked)
        ks = await wait_until(
            lambda: _kill_switch_view(c, "halt before the forged release"),
            message="ops_api shows the engage",
        )
        assert ks["engaged"] is True, ks
        await wait_until(
            lambda: count(database_url, "SELECT count(*) FROM kill_switch_refusals") == 4,
            message="both refusals audited by risk and execution",
        )
        await wait_until(
            lambda: any(a.dedup_key == f"kill_switch:release_refused:{forged.id}" for a in alerts),
            message="the refusal alerted",
        )
        assert count(database_url, "SELECT count(*) FROM kill_switch_audit WHERE action = 'release'") == 0
        assert _orders_for(database_url, blocked.id) == 0, "an order went out under a forged release"
        # positive control: the same release with operator authority (the API signs it) does release
        r = await c.post(
            "/kill-switch", json={"action": "release", "reason": "operator: all clear"}, headers=OP
        )
        assert r.status_code == 200, r.text
        assert all(not a["engaged"] for a in r.json()["acks"].values()), r.json()
        ok = make_verdict(epoch_of=database_url)
        await bus.publish(subjects.verdict(ok.symbol), ok)
        await wait_until(
            lambda: _orders_for(database_url, ok.id) == 1, timeout=20, message="an order after release"
        )
        assert (await c.get("/kill-switch", headers=VIEW)).json()["engaged"] is False


async def test_after_five_failed_logins_an_operator_can_still_engage(services, tmp_path):
    url = await _ops_risk_execution(services, tmp_path)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await wait_until(lambda: _both_up(c), timeout=30, message="risk and execution up")
        for _ in range(5):
            r = await c.post(
                "/kill-switch",
                json={"action": "engage", "reason": "guess"},
                headers={"Authorization": "Bearer wrong-token-guess"},
            )
            assert r.status_code == 401
        assert (
            await c.get("/status", headers={"Authorization": "Bearer wrong"})
        ).status_code == 429  # throttled
        r = await c.post(
            "/kill-switch", json={"action": "engage", "reason": "SEV-1: real operator"}, headers=OP
        )
        assert r.status_code == 200, r.text
        assert (await c.get("/kill-switch", headers=VIEW)).json()["engaged"] is True
        bad = await c.post(
            "/kill-switch",
            json={"action": "engage", "reason": "guess"},
            headers={"Authorization": "Bearer still-wrong"},
        )
        assert bad.status_code == 429  # a wrong token stays throttled


async def test_garbage_on_the_kill_switch_is_shown_as_unknown_engaged_alerted_and_an_incident(
    services, bus, database_url, tmp_path
):
    url = await _ops_risk_execution(services, tmp_path)
    acks = await Acks().attach(bus)
    alerts = await _alerts(bus)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        await wait_until(lambda: _both_up(c), timeout=30, message="risk and execution up")
        release = await kill_switch(bus, "release", "start clean")
        await acks.wait(release.id, ("risk", "execution"))
        # ops_api reads the subject on its own subscription: the acks of risk and execution do not order it
        await wait_until(lambda: _kill_switch_view(c, "start clean"), message="ops_api shows the release")
        assert (await c.get("/kill-switch", headers=VIEW)).json() == {
            "engaged": False,
            "known": True,
            "since": release.ts.isoformat(),
            "reason": "start clean",
        }
        await bus.js.publish(subjects.kill_switch(), b'{"action": "release", "oops": true}')
        await wait_until(
            lambda: (
                {a.source for a in alerts if a.dedup_key == "kill_switch:unreadable"}
                >= {"risk", "execution", "ops_api"}
            ),
            message="SEV-1 from risk, execution and ops_api",
        )
        assert all(a.severity == "SEV-1" for a in alerts if a.dedup_key == "kill_switch:unreadable")
        ks = (await c.get("/kill-switch", headers=VIEW)).json()
        assert ks["engaged"] is True and ks["known"] is False and ks["since"], ks
        assert "fresh command" in ks["reason"] and "operator authority" in ks["reason"]
        status = (await c.get("/status", headers=VIEW)).json()
        assert status["kill_switch"]["known"] is False and status["trading_state"] == "HALTED"
        await wait_until(
            lambda: (
                count(
                    database_url,
                    "SELECT count(*) FROM incidents WHERE key = 'kill_switch:unreadable'"
                    " AND resolved_at IS NULL",
                )
                == 1
            ),
            message="an incident open",
        )
        # restored by a fresh command with operator authority; the incident closes
        r = await c.post("/kill-switch", json={"action": "release", "reason": "restored"}, headers=OP)
        assert r.status_code == 200, r.text
        ks = (await c.get("/kill-switch", headers=VIEW)).json()
        assert ks["engaged"] is False and ks["known"] is True
        await wait_until(
            lambda: (
                count(
                    database_url,
                    "SELECT count(*) FROM incidents WHERE key = 'kill_switch:unreadable'"
                    " AND resolved_at IS NOT NULL",
                )
                == 1
            ),
            message="incident resolved",
        )


async def _kill_switch_view(c: httpx.AsyncClient, reason: str) -> dict | None:
    """ops_api's view of the kill switch once it names `reason` (the last command it has read), else None."""
    ks = (await c.get("/kill-switch", headers=VIEW)).json()
    return ks if ks["reason"] == reason else None


def _cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BNML_", "NATS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", *args],
        capture_output=True,
        text=True,
        env={**env, **env_extra},
        cwd=ROOT,
        timeout=60,
    )


async def test_the_cli_status_is_read_only_and_its_release_carries_operator_authority(own_nats):
    env = {"NATS_URL": own_nats.url}
    res = _cli(["kill-switch", "status"], env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"engaged": False, "known": True, "since": None, "reason": None}
    nc = await nats.connect(own_nats.url)
    try:
        assert await nc.jetstream().streams_info() == [], "status created streams"
        assert _cli(["kill-switch", "engage", "--reason", "cli drill"], env).returncode == 0
        op = {
            **env,
            "BNML_OPS_API__OPERATOR_TOKEN": OPERATOR_TOKEN,
            "BNML_KILL_SWITCH__RELEASE_KEY": RELEASE_KEY,
        }
        res = _cli(["kill-switch", "release", "--reason", "cli drill over", "--token", OPERATOR_TOKEN], op)
        assert res.returncode == 0, res.stdout + res.stderr
        raw = await nc.jetstream().get_last_msg("KILL_SWITCH", subjects.kill_switch())
        standing = KillSwitchCommand.model_validate_json(raw.data)
        assert standing.action == "release" and check_authority(standing, RELEASE_KEY).allowed
    finally:
        await nc.close()
    shown = json.loads(_cli(["kill-switch", "status"], op).stdout)
    assert shown["engaged"] is False and shown["known"] is True and shown["reason"] == "cli drill over"
    # without the key nobody here can verify that release: the status says so, as the services would act
    shown = json.loads(_cli(["kill-switch", "status"], env).stdout)
    assert shown["engaged"] is True and shown["known"] is False and "authority" in shown["reason"]
    # no key, no release: refused before anything is published
    res = _cli(
        ["kill-switch", "release", "--reason", "no key", "--token", OPERATOR_TOKEN],
        {**env, "BNML_OPS_API__OPERATOR_TOKEN": OPERATOR_TOKEN},
    )
    assert res.returncode == 3 and "release_key" in res.stderr, res.stderr

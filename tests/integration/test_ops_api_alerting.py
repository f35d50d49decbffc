"""Alert delivery to a local webhook receiver (aiohttp) and a local SMTP server (aiosmtpd): no mocks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from bnml.embedded import free_port
from libs.common import subjects
from libs.common.contracts import Alert, utcnow
from tests.helpers import ROOT, wait_until


class Inbox:
    def __init__(self):
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope.content.decode("utf-8", errors="replace"))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, inbox
    ctl.stop()


@pytest.fixture
async def webhook():
    got: list[dict] = []
    state = {"fail": False}

    async def hook(request: web.Request) -> web.Response:
        if state["fail"]:
            return web.Response(status=503, text="receiver down")
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}/hook", got, state
    await runner.cleanup()


def alerting_config(hook_url: str, smtp_port: int) -> dict:
    return {
        "monitoring": {
            "alerting": {
                "webhook": {"enabled": True, "url": hook_url},
                "email": {
                    "enabled": True,
                    "smtp_host": "127.0.0.1",
                    "smtp_port": smtp_port,
                    "secure_mode": "insecure",
                    "sender": "bnml@example.com",
                    "recipients": ["ops@example.com"],
                },
                "dedup_window_s": 300,
                "timeout_s": 10,
            }
        },
        "storage": {"backup": {"enabled": False}},
    }


def one(url: str, sql: str, params=()):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def test_an_alert_reaches_the_webhook_and_the_mailbox_once_despite_duplicates(
    services, bus, database_url, webhook, smtp
):
    hook_url, got, _ = webhook
    ctl, inbox = smtp
    services.configure(alerting_config(hook_url, ctl.port))
    services.start("ops_api")
    for _ in range(3):  # same dedup key: delivered once
        await bus.publish(
            subjects.alert("SEV-2"),
            Alert(
                ts=utcnow(),
                severity="SEV-2",
                source="market_data",
                title="BTC/USDT stale",
                detail="no tick for 30 s",
                dedup_key="market_data:stale:BTCUSDT",
            ),
        )
    await wait_until(lambda: got and inbox.messages, timeout=30, message="webhook and email delivery")
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM alerts")[0][0] == 3,
        timeout=20,
        message="all three alerts recorded",
    )
    # every alert's outcome marked, which ops_api does after its deliveries: any (wrong) second one is in
    await wait_until(
        lambda: one(database_url, "SELECT count(*) FROM alerts WHERE delivered <> 'pending'")[0][0] == 3,
        timeout=20,
        message="all three alerts decided",
    )
    assert len(got) == 1 and len(inbox.messages) == 1
    assert "BTC/USDT stale" in got[0]["title"] and "SEV-2" in got[0]["title"]
    assert "no tick for 30 s" in inbox.messages[0]
    outcomes = sorted(r[0] for r in one(database_url, "SELECT delivered FROM alerts"))
    assert outcomes == ["sent", "suppressed:duplicate", "suppressed:duplicate"]
    assert sorted(one(database_url, "SELECT channel, ok FROM alert_deliveries")) == [
        ("email", True),
        ("webhook", True),
    ]


async def test_a_failing_channel_is_recorded_and_raised_as_alerting_externe_ko_on_the_others(
    services, bus, database_url, webhook, smtp
):
    hook_url, got, state = webhook
    ctl, inbox = smtp
    state["fail"] = True
    services.configure(alerting_config(hook_url, ctl.port))
    services.start("ops_api")
    await bus.publish(
        subjects.alert("SEV-1"),
        Alert(
            ts=utcnow(),
            severity="SEV-1",
            source="risk",
            title="daily loss budget breached",
            dedup_key="risk:daily",
        ),
    )
    await wait_until(
        lambda: any("alerting externe KO: webhook" in m for m in inbox.messages),
        timeout=40,
        message="the KO alert by email",
    )
    assert any("daily loss budget breached" in m for m in inbox.messages)  # email kept working
    rows = one(database_url, "SELECT channel, ok, error FROM alert_deliveries WHERE NOT ok")
    assert rows and rows[0][0] == "webhook" and rows[0][2]
    await wait_until(
        lambda: (
            one(
                database_url,
                "SELECT count(*) FROM incidents WHERE kind = 'alerting_down' AND severity = 'SEV-2'",
            )[0][0]
            == 1
        ),
        timeout=20,
        message="alerting_down incident",
    )


async def test_bnml_alert_test_reports_each_channel(services, webhook, smtp):
    hook_url, got, _ = webhook
    services.configure(
        {
            "monitoring": {
                "alerting": {
                    "webhook": {"enabled": True, "url": hook_url},
                    "email": {
                        "enabled": True,
                        "smtp_host": "127.0.0.1",
                        "smtp_port": free_port(),
                        "secure_mode": "insecure",
                        "sender": "bnml@example.com",
                        "recipients": ["ops@example.com"],
                    },
                    "timeout_s": 5,
                }
            }
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env["BNML_CONFIG"] = str(services.config_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bnml.cli",
        "alert",
        "test",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, (out, err)  # the email channel points at a closed port
    lines = dict(line.split(None, 1) for line in out.decode().strip().splitlines())
    assert lines["webhook"] == "ok" and lines["email"].startswith("FAILED")
    assert len(got) == 1 and "test alert" in got[0]["title"]

"""ops_api's view of the services on the test clock: a service whose heartbeats stop is shown `down` in /status
once the runtime's clock passes `monitoring.heartbeat_timeout_s`, and back when it beats again."""

from __future__ import annotations

import httpx
import pytest

from libs.common import subjects
from libs.common.contracts import Heartbeat
from services.ops_api.shell import OpsApiService
from tests.helpers import VIEWER_TOKEN, wait_until
from tests.kit.harness import in_process

pytestmark = pytest.mark.integration  # on this test's NATS and Postgres

TIMEOUT_S = 300.0  # five minutes: out of reach of any wall-clock wait in this test


async def test_a_silent_service_is_down_once_the_clock_passes_the_heartbeat_timeout(settings_for, bus):
    settings = settings_for({"monitoring": {"heartbeat_timeout_s": TIMEOUT_S}})
    async with (
        in_process(OpsApiService(), settings) as shell,
        httpx.AsyncClient(
            base_url=shell.app.state.public_url, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}
        ) as http,
    ):

        async def risk_view() -> dict:
            return (await http.get("/status")).json()["services"]["risk"]

        async def beat() -> None:
            hb = Heartbeat(ts=shell.clock.now(), service="risk", instance="r1", uptime_s=1)
            await bus.publish(subjects.heartbeat("risk"), hb)

        assert (await risk_view())["status"] == "down"  # never heard of
        await beat()

        async def up() -> bool:
            return (await risk_view())["status"] == "ok"

        await wait_until(up, timeout=30, message="risk up after its heartbeat")

        shell.advance(TIMEOUT_S)  # exactly at the timeout: still up
        view = await risk_view()
        assert view["status"] == "ok" and view["heartbeat_age_s"] == TIMEOUT_S, view

        shell.advance(1)
        view = await risk_view()
        assert view["status"] == "down" and view["heartbeat_age_s"] == TIMEOUT_S + 1, view

        await beat()
        await wait_until(up, timeout=30, message="risk up again on a new heartbeat")

"""deploy/nats: each service's NATS user may publish only its own subjects, on a real nats-server.

The server runs deploy/nats/nats-server.conf (the same file compose mounts). A denied publish is refused by
the server and shows up in nats-py's error callback as a "Permissions Violation"; an allowed one reaches an
observer connected as ops_api (which may read everything). That the five services run their pipeline with
their own users (and the CLI as `ops`) is shown by test_deploy_stack.py.
"""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from libs.common import subjects
from tests.helpers import wait_until
from tests.unit.deploy.tooling import nats_passwords, start_authenticated_nats

pytestmark = pytest.mark.integration

SYM = "BTC/USDT"
USERS = ("market_data", "signal", "risk", "execution", "ops_api", "ops")
# subject -> the users allowed to publish it (everyone else must be refused)
PUBLISH_RULES: dict[str, set[str]] = {
    subjects.verdict(SYM): {"risk"},
    subjects.order(SYM): {"execution"},
    subjects.fill(SYM): {"execution"},
    subjects.kill_switch(): {"ops_api", "ops", "risk"},  # risk only re-asserts an engagement its audit holds
    subjects.tick(SYM): {"market_data"},
    subjects.signal(SYM): {"signal"},
    subjects.drift(): {"signal"},
    subjects.trading_state(): {"risk"},
    subjects.breaker_tripped(): {"risk"},
    subjects.heartbeat("risk"): {"risk"},
    subjects.heartbeat("execution"): {"execution"},
    subjects.kill_switch_ack("execution"): {"execution"},
    subjects.kill_switch_latched("execution"): {"execution"},
    subjects.trading_control(): {
        "ops_api"
    },  # pause / resume / exit: the operator's HTTP call, applied by risk
    subjects.trading_control_result("risk"): {"risk"},
    subjects.alert("SEV-1"): {"market_data", "signal", "risk", "execution", "ops_api", "ops"},
    "$JS.API.STREAM.DELETE.VERDICTS": set(),
    "$JS.API.STREAM.PURGE.KILL_SWITCH": set(),
    "$JS.API.STREAM.INFO.VERDICTS": set(USERS),
    # a durable consumer belongs to its service: nobody else may (re)create it, ack for it, or delete it
    "$JS.API.CONSUMER.DURABLE.CREATE.VERDICTS.execution": {"execution"},
    "$JS.API.CONSUMER.CREATE.VERDICTS.execution.risk.verdict.>": {"execution"},
    "$JS.ACK.VERDICTS.execution.1.5.5.1700000000000000000.0": {"execution"},
    "$JS.API.CONSUMER.DELETE.VERDICTS.execution": set(),
    "$JS.API.CONSUMER.CREATE.FILLS.risk": {"risk"},
    "$JS.ACK.FILLS.risk.1.2.2.1700000000000000000.0": {"risk"},
    "$JS.API.CONSUMER.CREATE.ALERTS.ops_api_alerts": {"ops_api"},
}


@pytest.fixture
def passwords() -> dict[str, str]:
    return nats_passwords()


@pytest.fixture
def secure_nats(tmp_path: Path, passwords):
    server = start_authenticated_nats(tmp_path / "nats-secure", passwords)
    yield server
    server.stop()


async def _connect(url: str, user: str, password: str, errors: list[Exception]):
    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    return await nats.connect(
        url, user=user, password=password, error_cb=on_error, allow_reconnect=False, connect_timeout=5
    )


async def test_each_user_publishes_only_its_own_subjects(secure_nats, passwords):
    seen: list[str] = []
    observer = await _connect(secure_nats.url, "ops_api", passwords["ops_api"], [])

    async def note(msg) -> None:
        seen.append(msg.subject)

    await observer.subscribe(">", cb=note)
    await observer.flush()
    wrong: list[str] = []
    try:
        for user in USERS:
            errors: list[Exception] = []
            nc = await _connect(secure_nats.url, user, passwords[user], errors)
            try:
                for subject, allowed in PUBLISH_RULES.items():
                    before = len(errors)
                    seen.clear()
                    await nc.publish(subject, b"{}")
                    await nc.flush()
                    if user in allowed:
                        await observer.flush()
                        await wait_until(
                            lambda s=subject: s in seen,
                            timeout=5,
                            message=f"{user}'s publish to {subject} reaching the observer",
                        )
                        if len(errors) > before:
                            wrong.append(f"{user} -> {subject}: allowed but got {errors[-1]}")
                    else:
                        await wait_until(
                            lambda b=before, e=errors: len(e) > b,
                            timeout=5,
                            message=f"a permissions violation for {user} -> {subject}",
                        )
                        if "permissions violation" not in str(errors[-1]).lower():
                            wrong.append(f"{user} -> {subject}: unexpected error {errors[-1]}")
                        await observer.flush()
                        if subject in seen:
                            wrong.append(f"{user} -> {subject}: denied yet delivered")
            finally:
                await nc.close()
    finally:
        await observer.close()
    assert not wrong, "\n".join(wrong)


async def test_connection_without_or_with_wrong_credentials_is_refused(secure_nats, passwords):
    for kwargs in ({}, {"user": "risk", "password": "not-the-password"}, {"user": "nobody", "password": "x"}):
        with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
            await nats.connect(
                secure_nats.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **kwargs
            )


async def test_a_subscriber_cannot_read_what_its_user_is_not_allowed(secure_nats, passwords):
    errors: list[Exception] = []
    nc = await _connect(secure_nats.url, "market_data", passwords["market_data"], errors)
    try:
        await nc.subscribe(subjects.ALL_VERDICTS)
        await nc.flush()
        await wait_until(lambda: errors, timeout=5, message="a subscription permissions violation")
        assert "permissions violation for subscription" in str(errors[0]).lower()
    finally:
        await nc.close()

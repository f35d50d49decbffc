"""deploy/alertmanager: the configuration Alertmanager gets from the template and deploy/.env (render.py), checked
by Debian's `amtool check-config`, and its routing and inhibition read for what operators rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.unit.deploy.tooling import DEPLOY, require_binary

AM_DIR = DEPLOY / "alertmanager"
ALL_CHANNELS = {
    "ALERTMANAGER_WEBHOOK_URL": "https://hooks.example.org/bnml",
    "ALERTMANAGER_TELEGRAM_BOT_TOKEN": "123456:telegram-token",
    "ALERTMANAGER_TELEGRAM_CHAT_ID": "-1001234",
    "ALERTMANAGER_EMAIL_TO": "ops@example.org",
    "ALERTMANAGER_EMAIL_FROM": "bnml@example.org",
    "ALERTMANAGER_SMTP_SMARTHOST": "smtp.example.org:587",
    "ALERTMANAGER_SMTP_USERNAME": "bnml",
    "ALERTMANAGER_SMTP_PASSWORD": "smtp-password",
}


def render(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(AM_DIR / "render.py"), "--out", str(tmp_path / "am.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def amtool_check(path) -> subprocess.CompletedProcess:
    binary = require_binary("amtool", "prometheus-alertmanager")
    return subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True, timeout=60)


def test_the_template_and_a_config_with_every_channel_pass_amtool(tmp_path):
    res = amtool_check(AM_DIR / "alertmanager.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    res = render(tmp_path, ALL_CHANNELS)
    assert res.returncode == 0, res.stderr
    assert "webhook, telegram, email" in res.stdout
    assert not any(v in res.stdout for k, v in ALL_CHANNELS.items() if "TOKEN" in k or "PASSWORD" in k)
    check = amtool_check(tmp_path / "am.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    receiver = yaml.safe_load((tmp_path / "am.yml").read_text())["receivers"][0]
    assert receiver["webhook_configs"][0]["url"] == ALL_CHANNELS["ALERTMANAGER_WEBHOOK_URL"]
    assert receiver["telegram_configs"][0]["chat_id"] == -1001234
    assert receiver["email_configs"][0]["smarthost"] == "smtp.example.org:587"
    assert all(
        c[0]["send_resolved"]
        for c in (receiver["webhook_configs"], receiver["telegram_configs"], receiver["email_configs"])
    )


@pytest.mark.parametrize(
    "env, named",
    [
        ({}, "no receiver"),
        ({"ALERTMANAGER_TELEGRAM_BOT_TOKEN": "123:abc"}, "ALERTMANAGER_TELEGRAM_CHAT_ID is empty"),
        (
            {"ALERTMANAGER_TELEGRAM_BOT_TOKEN": "123:abc", "ALERTMANAGER_TELEGRAM_CHAT_ID": "@ops"},
            "ALERTMANAGER_TELEGRAM_CHAT_ID: not an integer",
        ),
        (
            {"ALERTMANAGER_EMAIL_TO": "ops@example.org"},
            "ALERTMANAGER_EMAIL_FROM, ALERTMANAGER_SMTP_SMARTHOST is empty",
        ),
        ({"ALERTMANAGER_WEBHOOK_URL": "hooks.example.org"}, "ALERTMANAGER_WEBHOOK_URL: not an http(s) URL"),
    ],
)
def test_no_receiver_or_a_half_configured_one_is_refused_naming_the_variable(tmp_path, env, named):
    res = render(tmp_path, env)
    assert res.returncode == 2 and named in res.stderr, res.stderr
    assert not (tmp_path / "am.yml").exists(), "nothing is written that would deliver to nobody"


def test_one_channel_is_enough(tmp_path):
    res = render(tmp_path, {"ALERTMANAGER_WEBHOOK_URL": "http://127.0.0.1:9/alerts"})
    assert res.returncode == 0, res.stderr
    receiver = yaml.safe_load((tmp_path / "am.yml").read_text())["receivers"][0]
    assert set(receiver) == {"name", "webhook_configs"}
    assert amtool_check(tmp_path / "am.yml").returncode == 0


def _routes_to(labels: dict[str, str], config) -> str:
    binary = require_binary("amtool", "prometheus-alertmanager")
    res = subprocess.run(
        [
            binary,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            "--verify.receivers=operators",
            *[f"{k}={v}" for k, v in labels.items()],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def test_every_severity_reaches_the_operators_and_sev1_is_sooner_and_repeated(tmp_path):
    assert render(tmp_path, {"ALERTMANAGER_WEBHOOK_URL": "http://127.0.0.1:9/alerts"}).returncode == 0
    for sev in ("SEV-1", "SEV-2", "SEV-3", "INFO"):
        assert _routes_to({"alertname": "X", "severity": sev}, tmp_path / "am.yml") == "operators"
    route = yaml.safe_load((AM_DIR / "alertmanager.yml").read_text())["route"]
    sev1 = next(r for r in route["routes"] if r["matchers"] == ['severity="SEV-1"'])
    seconds = {"s": 1, "m": 60, "h": 3600}
    assert int(sev1["group_wait"][:-1]) * seconds[sev1["group_wait"][-1]] <= 10
    assert sev1["repeat_interval"] == "30m"


def test_the_kill_switch_inhibits_its_consequences_and_a_down_service_its_own():
    rules = yaml.safe_load((AM_DIR / "alertmanager.yml").read_text())["inhibit_rules"]
    alerts = {
        r["alert"]
        for g in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }

    def inhibited(source: dict[str, str], target: dict[str, str]) -> bool:
        import re

        def match(matchers, labels):
            for m in matchers:
                key, op, value = re.fullmatch(r'(\w+)(=~|=)"(.*)"', m).groups()
                got = labels.get(key, "")
                if not (re.fullmatch(value, got) if op == "=~" else got == value):
                    return False
            return True

        return any(
            match(r["source_matchers"], source)
            and match(r["target_matchers"], target)
            and all(source.get(k) == target.get(k) for k in r.get("equal", []))
            for r in rules
        )

    ks = {"alertname": "BnmlKillSwitchEngaged", "severity": "SEV-1"}
    assert inhibited(ks, {"alertname": "BnmlTradingHalted", "severity": "SEV-2"})
    assert not inhibited(ks, {"alertname": "BnmlOrderOutcomeUnknown", "severity": "SEV-1"}), (
        "not its consequence"
    )
    down = {"alertname": "BnmlServiceDown", "service": "risk"}
    assert inhibited(down, {"alertname": "BnmlServiceNatsDisconnected", "service": "risk"})
    assert not inhibited(down, {"alertname": "BnmlServiceNatsDisconnected", "service": "signal"})
    assert inhibited(
        {"alertname": "BnmlServiceDown", "service": "execution"}, {"alertname": "BnmlExecutionWriterNotOne"}
    )
    named = set()
    for r in rules:
        for m in r["source_matchers"] + r["target_matchers"]:
            if m.startswith("alertname"):
                named |= set(m.split('"')[1].split("|"))
    assert named <= alerts, f"inhibition names alerts that do not exist: {sorted(named - alerts)}"

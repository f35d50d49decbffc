"""Apprise URLs built from monitoring.alerting settings; secrets never left in error text."""

from __future__ import annotations

from libs.common.settings.ops import AlertingSettings
from services.ops_api.alerting import Channel, build_channels, format_alert


def test_only_enabled_channels_are_built():
    assert build_channels(AlertingSettings()) == []


def test_webhook_http_becomes_apprise_json_and_https_jsons():
    (c,) = build_channels(
        AlertingSettings(webhook={"enabled": True, "url": "http://127.0.0.1:9000/hook?x=1"})
    )
    assert c.url == "json://127.0.0.1:9000/hook?x=1"
    (c,) = build_channels(AlertingSettings(webhook={"enabled": True, "url": "https://hooks.example.com/a"}))
    assert c.url == "jsons://hooks.example.com/a"


def test_telegram_and_email_urls_carry_their_settings_and_know_their_secrets():
    cfg = AlertingSettings(
        telegram={"enabled": True, "bot_token": "123:SECRET", "chat_id": "-100"},
        email={
            "enabled": True,
            "smtp_host": "smtp.example.com",
            "smtp_port": 587,
            "username": "bot",
            "password": "p@ss",
            "sender": "bot@example.com",
            "recipients": ["a@example.com", "b@example.com"],
        },
    )
    tg, mail = build_channels(cfg)
    assert tg.url == "tgram://123:SECRET/-100" and tg.scrub("failed for 123:SECRET") == "failed for ***"
    assert mail.url.startswith("mailto://bot:p%40ss@smtp.example.com:587?from=bot@example.com")
    assert "to=a@example.com,b@example.com" in mail.url and "mode=starttls" in mail.url
    assert mail.scrub("auth p@ss refused") == "auth *** refused"


def test_alert_text_names_severity_source_and_title():
    title, body = format_alert("SEV-1", "risk", "daily loss budget breached", "-250 USDT")
    assert title == "[BN-ML] SEV-1 daily loss budget breached" and "from risk" in body and "-250 USDT" in body


def test_scrub_without_secrets_is_identity():
    assert Channel("webhook", "json://h/p").scrub("boom") == "boom"

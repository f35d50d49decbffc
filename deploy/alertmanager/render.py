"""Write Alertmanager's configuration: deploy/alertmanager/alertmanager.yml with the receiver filled from the
environment (deploy/.env in compose). Standard library + PyYAML only (the BN-ML image has both).

    python deploy/alertmanager/render.py --out /etc/alertmanager/alertmanager.yml

Receivers (set the ones you use; at least one, or nothing would reach a person and this refuses):
    ALERTMANAGER_WEBHOOK_URL                  http(s) URL that gets Alertmanager's JSON (e.g. a chat bridge)
    ALERTMANAGER_TELEGRAM_BOT_TOKEN           Telegram bot token, with
    ALERTMANAGER_TELEGRAM_CHAT_ID             the chat id (an integer, negative for a group)
    ALERTMANAGER_EMAIL_TO                     recipient(s), with
    ALERTMANAGER_EMAIL_FROM                   the sender and
    ALERTMANAGER_SMTP_SMARTHOST               the SMTP server host:port; optionally
    ALERTMANAGER_SMTP_USERNAME / _PASSWORD    SMTP login, and
    ALERTMANAGER_SMTP_REQUIRE_TLS             true (default) or false

Exit 0 with a one-line summary naming the channels (never a secret); exit 2 naming the missing or bad variable.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).resolve().parent / "alertmanager.yml"
RECEIVER = "operators"


class ConfigError(ValueError):
    pass


def _get(env: Mapping[str, str], key: str) -> str:
    return (env.get(key) or "").strip()


def _group(env: Mapping[str, str], channel: str, required: list[str]) -> bool:
    """True when the channel is configured; a half-configured channel is an error naming what is missing."""
    have = [k for k in required if _get(env, k)]
    if have and len(have) < len(required):
        missing = [k for k in required if k not in have]
        raise ConfigError(f"{channel}: {', '.join(missing)} is empty (set it, or empty {', '.join(have)} too)")
    return bool(have)


def webhook(env: Mapping[str, str]) -> list[dict]:
    url = _get(env, "ALERTMANAGER_WEBHOOK_URL")
    if not url:
        return []
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError("ALERTMANAGER_WEBHOOK_URL: not an http(s) URL")
    return [{"url": url, "send_resolved": True}]


def telegram(env: Mapping[str, str]) -> list[dict]:
    keys = ["ALERTMANAGER_TELEGRAM_BOT_TOKEN", "ALERTMANAGER_TELEGRAM_CHAT_ID"]
    if not _group(env, "telegram", keys):
        return []
    chat = _get(env, keys[1])
    if not re.fullmatch(r"-?\d+", chat):
        raise ConfigError("ALERTMANAGER_TELEGRAM_CHAT_ID: not an integer chat id")
    return [{"bot_token": _get(env, keys[0]), "chat_id": int(chat), "parse_mode": "HTML", "send_resolved": True}]


def email(env: Mapping[str, str]) -> list[dict]:
    keys = ["ALERTMANAGER_EMAIL_TO", "ALERTMANAGER_EMAIL_FROM", "ALERTMANAGER_SMTP_SMARTHOST"]
    if not _group(env, "email", keys):
        return []
    if not re.fullmatch(r"[^\s:]+:\d+", _get(env, "ALERTMANAGER_SMTP_SMARTHOST")):
        raise ConfigError("ALERTMANAGER_SMTP_SMARTHOST: expected host:port")
    tls = _get(env, "ALERTMANAGER_SMTP_REQUIRE_TLS").lower() or "true"
    if tls not in ("true", "false"):
        raise ConfigError("ALERTMANAGER_SMTP_REQUIRE_TLS: true or false")
    cfg = {"to": _get(env, keys[0]), "from": _get(env, keys[1]), "smarthost": _get(env, keys[2]),
           "require_tls": tls == "true", "send_resolved": True}
    if _get(env, "ALERTMANAGER_SMTP_USERNAME"):
        cfg["auth_username"] = _get(env, "ALERTMANAGER_SMTP_USERNAME")
        cfg["auth_password"] = _get(env, "ALERTMANAGER_SMTP_PASSWORD")
    return [cfg]


def render(env: Mapping[str, str], template: Path = TEMPLATE) -> tuple[dict, list[str]]:
    """(the configuration, the channels configured); raises ConfigError when none is or one is wrong."""
    cfg = yaml.safe_load(template.read_text())
    channels = {"webhook_configs": webhook(env), "telegram_configs": telegram(env), "email_configs": email(env)}
    channels = {k: v for k, v in channels.items() if v}
    if not channels:
        raise ConfigError("no receiver: set ALERTMANAGER_WEBHOOK_URL, ALERTMANAGER_TELEGRAM_BOT_TOKEN and _CHAT_ID, "
                          "or ALERTMANAGER_EMAIL_TO, _FROM and ALERTMANAGER_SMTP_SMARTHOST in deploy/.env; "
                          "without one, alerts reach nobody")
    receiver = next(r for r in cfg["receivers"] if r["name"] == RECEIVER)
    receiver.update(channels)
    return cfg, [k.removesuffix("_configs") for k in channels]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="where to write the configuration")
    ap.add_argument("--template", default=str(TEMPLATE))
    args = ap.parse_args(argv)
    try:
        cfg, channels = render(os.environ, Path(args.template))
    except ConfigError as exc:
        print(f"alertmanager-config: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Written by deploy/alertmanager/render.py from deploy/.env; do not edit.\n"
                   + yaml.safe_dump(cfg, sort_keys=False))
    out.chmod(0o644)  # Alertmanager runs as another user (nobody) in its own container
    print(f"alertmanager-config: wrote {out}, receiver {RECEIVER}: {', '.join(channels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

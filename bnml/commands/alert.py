"""`bnml alert test`: send a test alert to every configured channel (monitoring.alerting.*) and report each."""

from __future__ import annotations

import asyncio
import sys


def register(sub) -> None:
    p = sub.add_parser("alert", help="external alerting (Telegram, webhook, email)")
    a = p.add_subparsers(dest="alert_action", required=True)
    t = a.add_parser("test", help="send a test alert to every enabled channel; exit 1 if any fails")
    t.add_argument("--message", default="test alert from `bnml alert test`")
    t.set_defaults(func=_test)


def _test(args) -> int:
    from services.ops_api.alerting import build_channels, format_alert, send_all
    from services.ops_api.tooling import NoDatabase, load

    try:
        settings = load(args.config)
    except NoDatabase as exc:
        print(f"bnml alert test: {exc}", file=sys.stderr)
        return 2
    cfg = settings.monitoring.alerting
    channels = build_channels(cfg)
    if not channels:
        print(
            "bnml alert test: no channel enabled under monitoring.alerting (telegram, webhook, email); alerts are "
            "only logged locally",
            file=sys.stderr,
        )
        return 1
    title, body = format_alert("INFO", "bnml", "test alert", args.message)
    results = asyncio.run(send_all(channels, title, body, cfg.timeout_s))
    for name, (ok, error) in results.items():
        print(f"{name:<9} {'ok' if ok else 'FAILED: ' + error}")
    return 0 if all(ok for ok, _ in results.values()) else 1

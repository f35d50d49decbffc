"""`bnml up` (start everything locally) and `bnml status` (what the running suite is doing)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("up", help="start NATS, Postgres (embedded unless configured) and the five services")
    p.set_defaults(func=_up)
    p = sub.add_parser("status", help="state of the running suite")
    p.add_argument("--json", action="store_true", help="one JSON object (see INTERFACES.md)")
    p.set_defaults(func=_status)


def _up(args) -> int:
    from bnml.launcher import run

    return run(args.config)


def _status(args) -> int:
    from bnml.client import NoSuite, api_get

    try:
        status = api_get("/status")
    except NoSuite as exc:
        print(f"bnml status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    ks = status["kill_switch"]
    if ks.get("known", True) is False:  # unreadable or unverifiable: the services treat it as engaged
        shown = f"UNKNOWN, treated as ENGAGED since {ks['since']} ({ks['reason']})"
    else:
        shown = f"ENGAGED since {ks['since']} ({ks['reason']})" if ks["engaged"] else "off"
    print(f"mode {status['mode']}  trading {status['trading_state']}  kill switch {shown}")
    print("counts  " + "  ".join(f"{k}={v}" for k, v in status["counts"].items()))
    for name, svc in status["services"].items():
        print(f"  {name:<12} {svc['status']:<9} heartbeat age {svc['heartbeat_age_s']}")
    for k, v in status["urls"].items():
        print(f"  {k:<9} {v}")
    return 0

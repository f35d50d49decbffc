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
    if "model" not in status:
        status["model"] = model_status(args.config, status.get("mode"))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    ks = status["kill_switch"]
    print(f"mode {status['mode']}  trading {status['trading_state']}  kill switch "
          f"{'ENGAGED since ' + str(ks['since']) + ' (' + str(ks['reason']) + ')' if ks['engaged'] else 'off'}")
    print("counts  " + "  ".join(f"{k}={v}" for k, v in status["counts"].items()))
    m = status["model"]
    if m.get("version") is None:
        print(f"model   NONE: {m.get('warning') or 'no model'}")
    else:
        print(f"model   {m['version']}  gate {'passed' if m['gate_passed'] else 'NOT PASSED'}")
    if m.get("warning"):
        print(f"WARNING {m['warning']}")
    for name, svc in status["services"].items():
        print(f"  {name:<12} {svc['status']:<9} heartbeat age {svc['heartbeat_age_s']}")
    for k, v in status["urls"].items():
        print(f"  {k:<9} {v}")
    return 0


def model_status(config: str | None, mode: str | None) -> dict:
    """`model {version, gate_passed}` of the status: the registry's `current` and its gate record, with the
    warning a person must see (ungated model in paper, refused model or none in live)."""
    try:
        from libs.common.settings import load_settings
        from services.signal.gate import serving_decision
        from services.signal.registry import ModelRefused, models_dir, read_current, read_metadata

        settings = load_settings(config)
        root = models_dir(settings)
        version = read_current(root)
        if version is None:
            return {"version": None, "gate_passed": False,
                    "warning": "no current model: the signal service holds (every decision HOLD)"}
        meta = read_metadata(root, version)
    except ModelRefused as exc:
        return {"version": None, "gate_passed": False, "warning": f"current model unreadable: {exc}"}
    except Exception as exc:  # status must answer even when the registry cannot be read from here
        return {"version": None, "gate_passed": None, "warning": f"model registry not readable here ({type(exc).__name__})"}
    verdict = serving_decision(meta, mode or settings.mode)
    return {"version": version, "gate_passed": verdict.gate_passed,
            "warning": verdict.warning or (f"live mode refuses it, signals HOLD: {verdict.reason}" if not verdict.allowed
                                           else "")}

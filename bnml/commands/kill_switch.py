"""`bnml kill-switch engage|release|status`: publishes on the bus itself, so it works with ops_api down."""

from __future__ import annotations

import asyncio
import getpass
import hmac
import json
import sys
import time

from libs.common import subjects
from libs.common.bus import Bus
from libs.common.contracts import KillSwitchAcknowledged, KillSwitchCommand, utcnow
from libs.common.contracts.base import KillSwitchAction
from libs.common.errors import ConfigurationError, InvalidInputError
from libs.common.kill_switch import KillSwitchLatch, sign
from libs.common.metrics import ServiceMetrics
from libs.common.settings import load_settings

ACKERS = ("risk", "execution")


def register(sub) -> None:
    p = sub.add_parser("kill-switch", help="engage, release or show the global kill switch")
    ks = p.add_subparsers(dest="ks_action", required=True)
    e = ks.add_parser("engage", help="halt trading now (cancels open orders)")
    e.add_argument("--reason", default="engaged from the command line")
    e.add_argument("--flatten", action="store_true", help="also close positions")
    e.set_defaults(func=_engage)
    r = ks.add_parser("release", help="release (operator only, reason required)")
    r.add_argument("--reason", required=True)
    r.add_argument("--token", default=None, help="operator token (default: env/suite)")
    r.set_defaults(func=_release)
    s = ks.add_parser("status", help="the standing kill-switch command")
    s.set_defaults(func=_status)


def _nats_url(config) -> str:
    from bnml.client import suite_info

    url = suite_info().get("nats_url") or load_settings(config).nats.url
    if not url:
        raise ConfigurationError("nats.url", "no running suite found and NATS_URL not set")
    return url


async def _connect(config, *, provision: bool = True) -> Bus:
    """`provision`: create or update the streams first (commands do; `status` only reads, never changes them)."""
    url = _nats_url(config)
    # inside a compose container the URL has no credentials: use the container's own NATS user (BNML_NATS__*)
    nats = load_settings(config).nats if "@" not in url else None
    bus = Bus(
        url,
        "cli",
        ServiceMetrics("cli", registry=_private_registry()),
        user=nats.user if nats else "",
        password=nats.password.get_secret_value() if nats else "",
    )
    await bus.connect(connect_timeout=3, retry_initial=False)
    if provision:
        await bus.ensure_streams(replicas=load_settings(config).nats.replicas_for)
    return bus


def _release_key(config) -> str:
    """The operators' release key: the running suite's (suite file), else settings / env."""
    from bnml.client import suite_info

    return suite_info().get("release_key") or load_settings(config).kill_switch.release_key.get_secret_value()


def _private_registry():
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


async def send_command(
    config,
    action: KillSwitchAction,
    reason: str,
    flatten: bool = False,
    actor: str | None = None,
    wait_s: float = 3.0,
) -> dict:
    """Publish a kill-switch command and wait for risk and execution to acknowledge it. A release is signed
    with the release key (operator authority that risk and execution verify themselves)."""
    cmd = KillSwitchCommand(
        ts=utcnow(), action=action, reason=reason, flatten=flatten, actor=actor or f"cli:{getpass.getuser()}"
    )
    if action == "release":
        cmd = sign(cmd, _release_key(config))
    bus = await _connect(config)
    try:
        acks: dict[str, KillSwitchAcknowledged] = {}
        done = asyncio.Event()

        async def on_ack(ack: KillSwitchAcknowledged, subject: str) -> None:
            if ack.command_id == cmd.id:
                acks[ack.service] = ack
                if all(s in acks for s in ACKERS):
                    done.set()

        await bus.subscribe(subjects.ALL_KILL_SWITCH_ACKS, KillSwitchAcknowledged, on_ack)
        started = time.perf_counter()
        await bus.publish(subjects.kill_switch(), cmd)
        try:
            await asyncio.wait_for(done.wait(), wait_s)
        except TimeoutError:
            pass
        return {
            "command_id": cmd.id,
            "action": action,
            "acknowledged_by": sorted(acks),
            "missing": [s for s in ACKERS if s not in acks],
            "refused_by": sorted(s for s, a in acks.items() if action == "release" and a.engaged),
            "detail": {s: a.detail for s, a in acks.items() if a.detail},
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    finally:
        await bus.drain()


def _report(result: dict) -> int:
    print(json.dumps(result, indent=2))
    if result.get("refused_by"):
        print(f"refused by {', '.join(result['refused_by'])}: the kill switch stays engaged", file=sys.stderr)
        return 3
    if result["missing"]:
        print(
            f"warning: no acknowledgement from {', '.join(result['missing'])}; the command stands on the bus "
            "and will be read by them at start-up",
            file=sys.stderr,
        )
    return 0


def _engage(args) -> int:
    try:
        return _report(asyncio.run(send_command(args.config, "engage", args.reason, args.flatten)))
    except Exception as exc:
        print(f"bnml kill-switch engage FAILED: {exc}", file=sys.stderr)
        return 1


def _release(args) -> int:
    from bnml.client import suite_info

    expected = (
        suite_info().get("operator_token")
        or load_settings(args.config).ops_api.operator_token.get_secret_value()
    )
    given = args.token or suite_info().get("operator_token") or ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        print(
            "bnml kill-switch release: refused: an operator token is required (--token or "
            "BNML_OPS_API__OPERATOR_TOKEN)",
            file=sys.stderr,
        )
        return 3
    try:
        return _report(asyncio.run(send_command(args.config, "release", args.reason)))
    except InvalidInputError as exc:
        print(
            f"bnml kill-switch release: refused: {exc} (set BNML_KILL_SWITCH__RELEASE_KEY)", file=sys.stderr
        )
        return 3
    except Exception as exc:
        print(f"bnml kill-switch release FAILED: {exc}", file=sys.stderr)
        return 1


def _status(args) -> int:
    """Read-only: the standing command as the services apply it (an unauthorised release or something
    unreadable shows as engaged, known false). Creates and updates nothing."""

    async def _read():
        bus = await _connect(args.config, provision=False)
        try:
            return await bus.last_entry("KILL_SWITCH", subjects.kill_switch(), KillSwitchCommand)
        finally:
            await bus.drain()

    latch = KillSwitchLatch(release_key=_key_or_empty(args.config))
    try:
        cmd, seq = asyncio.run(_read())
    except InvalidInputError as exc:
        latch.on_unreadable(str(exc), getattr(exc, "seq", 0), utcnow())
        cmd = None
    except Exception as exc:
        print(f"bnml kill-switch status: cannot read the state ({exc}); treat as ENGAGED", file=sys.stderr)
        return 1
    else:
        latch.on_empty() if cmd is None else latch.on_command(cmd, seq)
    out = latch.as_dict()
    if cmd is not None:
        out["actor"] = cmd.actor
    print(json.dumps(out))
    return 0


def _key_or_empty(config) -> str:
    try:
        return _release_key(config)
    except Exception:  # no key here: a release shows as not verifiable, i.e. engaged (fail closed)
        return ""

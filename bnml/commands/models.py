"""`bnml models list|show|promote|retire`: the model registry, visible and operable.

`promote` runs the promotion gate again on the model's recorded out-of-sample figures, under the gate
configured now (`signal.gate`), and refuses a model that fails it (exit 3) unless `--force` (paper mode only,
exit 4 in live). `retire` marks a version retired; retiring the `current` one either promotes
`--replace-with` (same checks) or clears `current` and says so: the signal service then holds. Every change is
appended to `<models_dir>/audit.jsonl` and recorded in the version's `metadata.json`.

Exit codes: 0 done, 1 unknown or untrustworthy version, 2 bad configuration, 3 the gate refused, 4 --force
refused (mode: live).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_GATE_FAILED, EXIT_FORCE_REFUSED = 0, 1, 2, 3, 4


def register(sub) -> None:
    p = sub.add_parser(
        "models",
        help="the model registry: list, show, promote, retire",
        epilog="exit codes: 0 done, 1 unknown or untrustworthy version, 2 bad configuration, "
        "3 the promotion gate refused, 4 --force refused in mode: live",
    )
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("list", help="every version, the current one marked, with its gate record")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_list)
    q = msub.add_parser("show", help="one version's metadata (default: current), gate, serving and audit")
    q.add_argument("version", nargs="?", default=None)
    q.set_defaults(func=_show)
    q = msub.add_parser("promote", help="make a version current if it passes the promotion gate")
    q.add_argument("version")
    q.add_argument(
        "--force", action="store_true", help="promote past a failed gate (paper mode only; audited)"
    )
    q.add_argument("--reason", default="", help="why (recorded in the audit)")
    q.set_defaults(func=_promote)
    q = msub.add_parser("retire", help="mark a version retired (never served again)")
    q.add_argument("version")
    q.add_argument("--reason", default="", help="why (recorded in the metadata and the audit)")
    q.add_argument("--replace-with", default=None, help="if it is current, promote this version instead")
    q.set_defaults(func=_retire)


def _context(args):
    from libs.common.errors import ConfigurationError
    from libs.common.settings import load_settings
    from services.signal.registry import models_dir

    try:
        settings = load_settings(args.config)
    except ConfigurationError as exc:
        print(f"bnml models: {exc}", file=sys.stderr)
        return None, None
    return settings, models_dir(settings)


def _gate_text(meta: dict) -> str:
    g = meta.get("gate")
    if not isinstance(g, dict):
        return "no gate record"
    p = g.get("p_value")
    return (
        f"{'PASS' if g.get('passed') else 'FAIL'} net {g.get('net_return', 0):+.2f}% "
        f"p={'-' if p is None else f'{p:.3f}'}"
    )


def _summary(meta: dict, current: str | None) -> dict:
    from services.signal.gate import gate_passed

    span = meta.get("data_span") or {}
    return {
        "version": meta.get("version"),
        "current": meta.get("version") == current,
        "timeframe": meta.get("timeframe"),
        "symbols": meta.get("symbols"),
        "data": (meta.get("data") or {}).get("kind"),
        "data_span": {"from": span.get("from"), "to": span.get("to")},
        "trained_at": meta.get("trained_at"),
        "gate_passed": gate_passed(meta),
        "gate": _gate_text(meta),
        "promotion": (meta.get("promotion") or {}).get("kind"),
        "forced": bool((meta.get("promotion") or {}).get("forced")),
        "retired": bool(meta.get("retired")),
    }


def _list(args) -> int:
    from services.signal.registry import ModelRefused, list_versions, read_current, read_metadata

    settings, root = _context(args)
    if settings is None:
        return EXIT_CONFIG
    try:
        current = read_current(root)
    except ModelRefused as exc:
        print(f"bnml models: {exc}", file=sys.stderr)
        current = None
    rows = []
    for v in list_versions(root):
        try:
            rows.append(_summary(read_metadata(root, v), current))
        except ModelRefused as exc:
            rows.append({"version": v, "current": v == current, "error": str(exc)})
    if args.json:
        print(json.dumps({"current": current, "models": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no model in {root}")
    for r in rows:
        if "error" in r:
            print(f"{'*' if r['current'] else ' '} {r['version']}  UNREADABLE: {r['error']}")
            continue
        flags = [f for f, on in (("FORCED", r["forced"]), ("RETIRED", r["retired"])) if on]
        if r["promotion"] == "bootstrap":
            flags.append("bootstrap")
        span = r["data_span"]
        print(
            f"{'*' if r['current'] else ' '} {r['version']:<40} {r['timeframe']:<4} {','.join(r['symbols'] or ['?']):<10} "
            f"{r['data']:<9} {str(span['from'])[:10]}..{str(span['to'])[:10]}  {r['gate']}"
            f"{'  ' + ' '.join(flags) if flags else ''}"
        )
    if current is None:
        print("current: none (the signal service holds; in paper mode it trains a synthetic bootstrap model)")
    return EXIT_OK


def _show(args) -> int:
    from services.signal.gate import serving_decision
    from services.signal.registry import ModelRefused, read_audit, read_current, read_metadata

    settings, root = _context(args)
    if settings is None:
        return EXIT_CONFIG
    try:
        current = read_current(root)
        version = args.version or current
        if version is None:
            print("bnml models show: no current model; name a version", file=sys.stderr)
            return EXIT_ERROR
        meta = read_metadata(root, version)
    except ModelRefused as exc:
        print(f"bnml models show: {exc}", file=sys.stderr)
        return EXIT_ERROR
    shown = {
        k: v for k, v in meta.items() if k != "reference"
    }  # reference distributions: bulky, for drift only
    shown["current"] = version == current
    shown["serving"] = {m: vars(serving_decision(meta, m)) for m in ("paper", "live")}
    shown["audit"] = [e for e in read_audit(root) if e.get("version") == version]
    shown["files"] = sorted(p.name for p in (root / version).iterdir())
    print(json.dumps(shown, indent=2, default=str))
    return EXIT_OK


def promote(settings, root, version: str, *, force: bool, reason: str, via: str) -> tuple[int, str]:
    """Make `version` current under the gate configured now. Returns (exit code, message)."""
    from services.signal.gate import regate
    from services.signal.registry import (
        ModelRefused,
        audit,
        load_model,
        read_current,
        set_current,
        update_metadata,
    )

    try:
        model = load_model(root, version)  # the artefact must verify before anything points at it
    except ModelRefused as exc:
        return EXIT_ERROR, str(exc)
    meta = model.metadata
    if meta.get("retired"):
        return EXIT_ERROR, f"{version} is retired; it cannot be promoted"
    g = settings.signal.gate
    decision = regate(
        meta,
        min_excess_return_pct=g.min_excess_return_pct,
        max_p_value=g.max_p_value,
        min_trades=g.min_trades,
    )
    now = datetime.now(UTC).isoformat()
    if not decision.passed and not force:
        audit(
            root,
            "promote_refused",
            version,
            mode=settings.mode,
            reasons=decision.reasons,
            via=via,
            reason=reason,
        )
        return EXIT_GATE_FAILED, f"{version} NOT promoted, the gate failed: " + "; ".join(decision.reasons)
    if not decision.passed and settings.mode == "live":
        audit(root, "force_promote_refused", version, mode=settings.mode, reasons=decision.reasons, via=via)
        return (
            EXIT_FORCE_REFUSED,
            "--force is refused in mode: live (only a model that passed the gate may be promoted)",
        )
    previous = read_current(root)
    if decision.passed:
        stored = meta.get("gate") or {}
        update_metadata(
            root,
            version,
            gate={**stored, **decision.record(), "regated_at": now, "config": g.model_dump()},
            promotion={"forced": False, "kind": "gate", "at": now, "mode": settings.mode, "via": via},
        )
    else:
        update_metadata(
            root,
            version,
            promotion={
                "forced": True,
                "kind": "force_promote",
                "at": now,
                "mode": settings.mode,
                "via": via,
                "reason": reason,
                "gate_reasons": decision.reasons,
            },
        )
    set_current(root, version)
    audit(
        root,
        "promote" if decision.passed else "force_promote",
        version,
        mode=settings.mode,
        gate_passed=decision.passed,
        previous=previous,
        via=via,
        reason=reason,
        reasons=decision.reasons,
    )
    if decision.passed:
        return EXIT_OK, f"{version} is current (gate passed)"
    return EXIT_OK, (
        f"{version} is current WITHOUT passing the gate (forced, audited): paper trading only, live "
        f"mode refuses it: " + "; ".join(decision.reasons)
    )


def _promote(args) -> int:
    settings, root = _context(args)
    if settings is None:
        return EXIT_CONFIG
    code, msg = promote(
        settings, root, args.version, force=args.force, reason=args.reason, via="bnml models promote"
    )
    print(f"bnml models promote: {msg}", file=sys.stdout if code == EXIT_OK else sys.stderr)
    return code


def _retire(args) -> int:
    from services.signal.registry import (
        ModelRefused,
        audit,
        clear_current,
        read_current,
        read_metadata,
        update_metadata,
    )

    settings, root = _context(args)
    if settings is None:
        return EXIT_CONFIG
    try:
        read_metadata(root, args.version)
        current = read_current(root)
    except ModelRefused as exc:
        print(f"bnml models retire: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.replace_with and args.replace_with == args.version:
        print("bnml models retire: --replace-with names the version being retired", file=sys.stderr)
        return EXIT_ERROR
    if current == args.version and args.replace_with:
        code, msg = promote(
            settings,
            root,
            args.replace_with,
            force=False,
            reason=f"replaces retired {args.version}",
            via="bnml models retire --replace-with",
        )
        if code != EXIT_OK:
            print(f"bnml models retire: nothing changed; {msg}", file=sys.stderr)
            return code
        print(f"bnml models retire: {msg}")
    now = datetime.now(UTC).isoformat()
    update_metadata(root, args.version, retired={"at": now, "reason": args.reason, "mode": settings.mode})
    cleared = current == args.version and not args.replace_with
    if cleared:
        clear_current(root)
    audit(
        root,
        "retire",
        args.version,
        mode=settings.mode,
        reason=args.reason,
        was_current=current == args.version,
        current_cleared=cleared,
        replaced_by=args.replace_with if current == args.version else None,
    )
    print(f"bnml models retire: {args.version} retired")
    if cleared:
        print(
            f"bnml models retire: WARNING: {args.version} was current; `current` now names no model, so the signal "
            f"service holds (every decision HOLD) until you promote one (`bnml models promote VERSION`)",
            file=sys.stderr,
        )
    return EXIT_OK

"""`bnml up` (start everything locally) and `bnml status` (what the running suite is doing)."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.text import Text

from bnml import ui
from bnml.commands import add_json_option


def register(sub) -> None:
    p = sub.add_parser("up", help="start NATS, Postgres (embedded unless configured) and the five services")
    p.add_argument(
        "--nats-cluster",
        type=int,
        default=0,
        choices=(3, 5),
        metavar="N",
        help="start an embedded NATS cluster of N nodes (3 or 5) on loopback instead of one server; "
        'streams at R3 (docs/deploy.md, "NATS cluster")',
    )
    p.set_defaults(func=_up)
    p = sub.add_parser("status", help="state of the running suite (exit 1 when no suite answers)")
    add_json_option(p, help="one JSON object (its keys: docs/interfaces.md)")
    p.set_defaults(func=_status)


def _up(args) -> int:
    from bnml.launcher import run

    return run(args.config, nats_cluster=args.nats_cluster)


def _status(args) -> int:
    from bnml.client import NoSuite, api_get

    try:
        status = api_get("/status", config=args.config)
    except NoSuite as exc:
        print(f"bnml status: {exc}", file=sys.stderr)
        return 1
    status["model"] = combine_model(status.get("model"), model_status(args.config, status.get("mode")))
    nodes = nats_nodes()
    if nodes:
        status["nats_nodes"] = nodes
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    render_status(status, ui.console())
    return 0


def combine_model(served: dict | None, registry: dict) -> dict:
    """The status's `model`: what the running signal service serves (its heartbeat, via the ops API) when it
    has said, else the registry's `current`; `registry_current` beside it, and a warning when the two differ
    (the service has not loaded the new `current` yet, refuses it, or serves nothing)."""
    if not isinstance(served, dict):
        return {**registry, "source": "registry"}
    out = {**served, "source": served.get("source", "signal"), "registry_current": registry.get("version")}
    if registry.get("gate_passed") is None:  # the registry is not readable from here: nothing to compare
        out["registry_current"] = None
    elif served.get("version") != registry.get("version"):
        out["differs"] = True
        note = (
            f"the signal service serves {served.get('version') or 'no model'}, the registry's current is "
            f"{registry.get('version') or 'none'}"
        )
        out["warning"] = note + (f"; {served['warning']}" if served.get("warning") else "")
    return out


def kill_switch_text(ks: dict) -> Text:
    """`off`, `ENGAGED since ... (reason)`, or UNKNOWN when the standing command cannot be read."""
    if ks.get("known") is False:
        return ui.styled("UNKNOWN (unreadable; risk and execution treat it as engaged)", "bold red")
    if ks.get("engaged"):
        return ui.styled(f"ENGAGED since {ks.get('since')} ({ks.get('reason')})", ui.STYLES["ENGAGED"])
    return ui.styled("off")


def render_status(status: dict, out: Console) -> None:
    """The human form of `/status`: a headline, the counts, one row per service, the URLs."""
    head = Text.assemble(
        "mode ",
        ui.styled(status["mode"], "bold"),
        "  trading ",
        ui.styled(status["trading_state"]),
        "  kill switch ",
        kill_switch_text(status["kill_switch"]),
    )
    model = status.get("model")  # present since the second wave (docs/interfaces.md)
    if isinstance(model, dict):
        head.append(f"  model {model.get('version')}")
        if model.get("source") == "signal":
            head.append(" (served)")
        gate = model.get("gate_passed")
        if gate is not None:
            head.append(" ")
            head.append_text(
                ui.styled("gate passed", "green") if gate else ui.styled("gate NOT passed", "yellow")
            )
    out.print(head)
    if isinstance(model, dict) and model.get(
        "warning"
    ):  # an ungated model in paper, none or a refused one in live
        out.print(
            ui.styled(
                f"WARNING model {model.get('version') or 'NONE'} / gate "
                f"{'passed' if model.get('gate_passed') else 'NOT PASSED'}: {model['warning']}",
                "bold yellow",
            )
        )
    out.print(Text("counts  " + "  ".join(f"{k}={v}" for k, v in status["counts"].items())))
    ui.print_table(
        out,
        ["service", "status", "heartbeat age (s)"],
        [
            [name, ui.styled(svc["status"]), svc.get("heartbeat_age_s")]
            for name, svc in status["services"].items()
        ],
    )
    render_shards(status.get("shards"), out)
    for k, v in status["urls"].items():
        out.print(Text(f"{k:<9} {v}"))
    for node in status.get("nats_nodes") or []:
        out.print(
            Text.assemble(
                "nats node ",
                node["url"],
                " ",
                ui.styled("reachable", "green") if node["reachable"] else ui.styled("DOWN", "bold red"),
            )
        )


def nats_nodes() -> list[dict]:
    """A cluster's nodes (more than one URL in the suite's NATS URL) and whether each accepts a connection
    (a TCP connect, 0.3 s each: cheap, and says nothing of JetStream); [] for a single server."""
    import socket
    from urllib.parse import urlsplit

    from bnml.client import suite_info
    from libs.common.settings import split_urls

    urls = split_urls(suite_info().get("nats_url") or "")
    if len(urls) < 2:
        return []
    out = []
    for url in urls:
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=0.3):
                ok = True
        except OSError:
            ok = False
        out.append({"url": f"{parts.scheme}://{parts.hostname}:{parts.port or 4222}", "reachable": ok})
    return out


def render_shards(shards: dict | None, out: Console) -> None:
    """Who owns which symbols: one row per instance of a sharded service, and what has no live owner. An
    unsharded service with one live instance is the usual case and prints nothing."""
    if not isinstance(shards, dict):
        return
    for name, view in shards.items():
        insts = view.get("instances") or []
        if view.get("count", 1) <= 1 and view.get("ok") and len(insts) <= 1:
            continue
        out.print(
            Text.assemble(
                f"{name} shards {view.get('count')}: ",
                ui.styled("ok") if view.get("ok") else ui.styled("DEGRADED", "bold yellow"),
                f"  ({view.get('symbols', 0)} symbols)",
            )
        )
        ui.print_table(
            out,
            ["shard", "instance", "status", "symbols", "digest", "heartbeat age (s)", "e.g."],
            [
                [
                    f"{i['index']}/{i['count']}",
                    i["instance"],
                    ui.styled(i["status"]),
                    i["symbols"],
                    i["digest"],
                    i["heartbeat_age_s"],
                    ", ".join(i.get("sample", [])[:3]),
                ]
                for i in insts
            ],
        )
        if view.get("missing_shards"):
            out.print(
                ui.styled(
                    f"  no live instance for shard(s) {', '.join(map(str, view['missing_shards']))}",
                    "bold yellow",
                )
            )
        if view.get("unowned"):
            out.print(
                ui.styled(
                    f"  {view['unowned']} symbol(s) without a live owner (risk holds them): "
                    f"{', '.join(view.get('unowned_sample', []))}",
                    "bold yellow",
                )
            )
        if view.get("contested"):
            out.print(
                ui.styled(
                    f"  {view['contested']} symbol(s) claimed by two live instances: "
                    f"{', '.join(view.get('contested_sample', []))}",
                    "bold red",
                )
            )
        if len(view.get("counts") or []) > 1:
            out.print(ui.styled(f"  instances disagree on the shard count: {view['counts']}", "bold red"))


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
            return {
                "version": None,
                "gate_passed": False,
                "warning": "no current model: the signal service holds (every decision HOLD)",
            }
        meta = read_metadata(root, version)
    except ModelRefused as exc:
        return {"version": None, "gate_passed": False, "warning": f"current model unreadable: {exc}"}
    except Exception as exc:  # status must answer even when the registry cannot be read from here
        return {
            "version": None,
            "gate_passed": None,
            "warning": f"model registry not readable here ({type(exc).__name__})",
        }
    verdict = serving_decision(meta, mode or settings.mode)
    return {
        "version": version,
        "gate_passed": verdict.gate_passed,
        "warning": verdict.warning
        or (f"live mode refuses it, signals HOLD: {verdict.reason}" if not verdict.allowed else ""),
    }

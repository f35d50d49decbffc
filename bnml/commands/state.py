"""`bnml state`: risk's account state and trading state, read straight from Postgres (`kv_state`).

Works without the services running: it needs only the database (the running suite's, `DATABASE_URL`,
or `database.url` in the config). `--json` prints the raw `kv_state.account_state`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from bnml import ui
from bnml.commands import add_json_option


def register(sub) -> None:
    p = sub.add_parser("state", help="risk's account state (budgets, breakers, positions) from Postgres")
    add_json_option(p, help="print kv_state.account_state and trading_state as JSON")
    p.add_argument(
        "--events", type=int, default=10, help="recent breaker/trading-state events to show (0: none)"
    )
    p.set_defaults(func=_state)


def _database_url(config) -> str:
    from bnml.client import suite_info
    from libs.common.errors import ConfigurationError
    from libs.common.settings import load_settings

    url = suite_info().get("database_url") or load_settings(config).database.url.get_secret_value()
    if not url:
        raise ConfigurationError(
            "database.url", "no running suite found and DATABASE_URL / database.url not set"
        )
    return url


def read_state(url: str, events: int = 10) -> dict:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        rows: dict[str, Any] = dict(
            conn.execute(
                "SELECT key, value FROM kv_state WHERE key IN ('account_state', 'trading_state')"
            ).fetchall()
        )
        recent: list = []
        if events > 0:
            recent = conn.execute(
                "SELECT ts, kind, name, symbol, detail FROM ("
                " SELECT ts, 'breaker ' || event AS kind, breaker AS name, symbol, reason AS detail"
                "   FROM risk_breaker_events"
                " UNION ALL SELECT ts, 'state' AS kind, previous || ' -> ' || state, NULL, reason"
                "   FROM risk_trading_state_events) e ORDER BY ts DESC LIMIT %s",
                (events,),
            ).fetchall()
    return {
        "account_state": rows.get("account_state"),
        "trading_state": rows.get("trading_state"),
        "recent_events": [
            {"ts": r[0].isoformat(), "kind": r[1], "name": r[2], "symbol": r[3], "detail": r[4]}
            for r in recent
        ],
    }


def _state(args) -> int:
    from libs.common.errors import ConfigurationError
    from libs.common.settings import mask_url

    try:
        url = _database_url(args.config)
    except ConfigurationError as exc:
        print(f"bnml state: {exc}", file=sys.stderr)
        return 2
    try:
        state = read_state(url, args.events)
    except Exception as exc:  # one line, no traceback, no password
        print(
            f"bnml state: {mask_url(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    if state["account_state"] is None:
        print("bnml state: no account state yet (risk has never run against this database)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state, indent=2, default=str))
        return 0
    render_state(state, ui.console())
    return 0


def render_state(state: dict, out: Console) -> None:
    """The human form: trading state and budgets as lines, positions, breakers and events as tables."""
    acct, t = state["account_state"], state["trading_state"] or {}
    trading = t.get("state", acct.get("trading_state"))
    out.print(
        Text.assemble(
            "trading ", ui.styled(trading), f"  since {t.get('since')}  {t.get('reason') or ''}".rstrip()
        )
    )
    out.print(
        Text(
            f"equity {acct['equity_usdt']} USDT  peak {acct['peak_equity_usdt']}  drawdown "
            f"{acct['drawdown_pct']:.2f}%  cash {acct.get('cash_usdt')}"
        )
    )
    out.print(
        Text(
            f"daily_realized_usdt {acct['daily_realized_usdt']}  weekly_realized_usdt "
            f"{acct['weekly_realized_usdt']}  (day from {acct.get('day_start')}, week from {acct.get('week_start')})"
        )
    )
    out.print(
        Text(
            f"market_volatility_ratio {acct['market_volatility_ratio']}  market_drift_detected "
            f"{acct['market_drift_detected']}  loss_streak {acct.get('loss_streak', 0)}"
        )
    )
    positions = acct.get("positions") or {}
    out.print(
        Text(
            f"positions ({acct.get('open_positions', len(positions))} open, exposure "
            f"{acct.get('total_exposure_usdt', '?')} USDT)" + ("" if positions else ": none")
        )
    )
    if positions:
        ui.print_table(
            out,
            ["symbol", "quantity", "average cost", "exposure USDT"],
            [
                [
                    sym,
                    qty,
                    acct.get("average_cost", {}).get(sym, "?"),
                    acct.get("exposure_usdt", {}).get(sym, "?"),
                ]
                for sym, qty in sorted(positions.items())
            ],
        )
    breakers = acct.get("breakers") or []
    out.print(Text(f"active breakers: {len(breakers) or 'none'}"))
    if breakers:
        ui.print_table(
            out,
            ["breaker", "effect", "where", "since", "until", "reason"],
            [
                [
                    b["breaker"],
                    ui.styled(b["effect"], "yellow"),
                    b.get("symbol") or b.get("scope") or "all",
                    b["since"],
                    b.get("until") or "",
                    b["reason"],
                ]
                for b in breakers
            ],
        )
    if state["recent_events"]:
        ui.print_table(
            out,
            ["ts", "kind", "name", "symbol", "detail"],
            [[e["ts"], e["kind"], e["name"], e["symbol"] or "", e["detail"]] for e in state["recent_events"]],
            title="recent events",
        )
    out.print(Text(f"updated {acct.get('ts')}"))

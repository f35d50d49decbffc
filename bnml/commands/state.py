"""`bnml state`: risk's account state and trading state, read straight from Postgres (`kv_state`).

Works without the services running: it needs only the database (the running suite's, `DATABASE_URL`,
or `database.url` in the config). `--json` prints the raw `kv_state.account_state`.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("state", help="risk's account state (budgets, breakers, positions) from Postgres")
    p.add_argument("--json", action="store_true", help="print kv_state.account_state and trading_state as JSON")
    p.add_argument("--events", type=int, default=10, help="recent breaker/trading-state events to show (0: none)")
    p.set_defaults(func=_state)


def _database_url(config) -> str:
    from bnml.client import suite_info
    from libs.common.settings import load_settings

    url = suite_info().get("database_url") or load_settings(config).database.url.get_secret_value()
    if not url:
        raise RuntimeError("no running suite found and DATABASE_URL / database.url not set")
    return url


def read_state(url: str, events: int = 10) -> dict:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = dict(conn.execute("SELECT key, value FROM kv_state WHERE key IN ('account_state', 'trading_state')"
                                 ).fetchall())
        recent: list = []
        if events > 0:
            recent = conn.execute(
                "SELECT ts, kind, name, symbol, detail FROM ("
                " SELECT ts, 'breaker ' || event AS kind, breaker AS name, symbol, reason AS detail"
                "   FROM risk_breaker_events"
                " UNION ALL SELECT ts, 'state' AS kind, previous || ' -> ' || state, NULL, reason"
                "   FROM risk_trading_state_events) e ORDER BY ts DESC LIMIT %s", (events,)).fetchall()
    return {"account_state": rows.get("account_state"), "trading_state": rows.get("trading_state"),
            "recent_events": [{"ts": r[0].isoformat(), "kind": r[1], "name": r[2], "symbol": r[3], "detail": r[4]}
                              for r in recent]}


def _state(args) -> int:
    from libs.common.settings import mask_url

    try:
        url = _database_url(args.config)
        state = read_state(url, args.events)
    except Exception as exc:  # one line, no traceback, no password
        print(f"bnml state: {mask_url(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 1
    acct, ts = state["account_state"], state["trading_state"]
    if acct is None:
        print("bnml state: no account state yet (risk has never run against this database)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state, indent=2, default=str))
        return 0
    t = ts or {}
    print(f"trading {t.get('state', acct.get('trading_state'))}  since {t.get('since')}  {t.get('reason') or ''}".rstrip())
    print(f"equity {acct['equity_usdt']} USDT  peak {acct['peak_equity_usdt']}  drawdown {acct['drawdown_pct']:.2f}%"
          f"  cash {acct.get('cash_usdt')}")
    print(f"daily_realized_usdt {acct['daily_realized_usdt']}  weekly_realized_usdt {acct['weekly_realized_usdt']}"
          f"  (day from {acct.get('day_start')}, week from {acct.get('week_start')})")
    print(f"market_volatility_ratio {acct['market_volatility_ratio']}  market_drift_detected "
          f"{acct['market_drift_detected']}  loss_streak {acct.get('loss_streak', 0)}")
    positions = acct.get("positions") or {}
    print(f"positions ({acct.get('open_positions', len(positions))} open, exposure "
          f"{acct.get('total_exposure_usdt', '?')} USDT)" + ("" if positions else ": none"))
    for sym, qty in sorted(positions.items()):
        print(f"  {sym:<12} {qty:>16}  avg {acct.get('average_cost', {}).get(sym, '?'):>14}"
              f"  exposure {acct.get('exposure_usdt', {}).get(sym, '?')} USDT")
    breakers = acct.get("breakers") or []
    print(f"active breakers: {len(breakers) or 'none'}")
    for b in breakers:
        where = b.get("symbol") or b.get("scope") or "all"
        print(f"  {b['breaker']:<24} {b['effect']:<16} {where:<12} since {b['since']}"
              f"{'  until ' + str(b['until']) if b.get('until') else ''}  {b['reason']}")
    if state["recent_events"]:
        print("recent events:")
        for e in state["recent_events"]:
            print(f"  {e['ts']}  {e['kind']:<16} {e['name']:<24} {e['symbol'] or '':<10} {e['detail']}")
    print(f"updated {acct.get('ts')}")
    return 0

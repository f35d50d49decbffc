"""`bnml incident list` and `bnml incident new`: incidents from Postgres and postmortem skeletons."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

TIMELINE_SQL = """
SELECT ts, 'incident' AS source, summary FROM incident_events WHERE incident_id = %(id)s
UNION ALL SELECT ts, 'kill_switch', action || ' by ' || actor || ': ' || reason FROM kill_switch_log
  WHERE ts BETWEEN %(lo)s AND %(hi)s
UNION ALL SELECT ts, 'breaker', kind || ' ' || breaker || coalesce(' ' || symbol, '') || ': ' || reason FROM breaker_log
  WHERE ts BETWEEN %(lo)s AND %(hi)s
UNION ALL SELECT ts, 'trading_state', previous || ' -> ' || state || ': ' || reason FROM trading_state_log
  WHERE ts BETWEEN %(lo)s AND %(hi)s
UNION ALL SELECT ts, 'alert', severity || ' ' || source || ': ' || title FROM alerts WHERE ts BETWEEN %(lo)s AND %(hi)s
UNION ALL SELECT ts, 'market_data', symbol || ' ' || status FROM market_status_events WHERE ts BETWEEN %(lo)s AND %(hi)s
ORDER BY ts LIMIT 500
"""


def register(sub) -> None:
    p = sub.add_parser("incident", help="incidents and postmortems")
    i = p.add_subparsers(dest="incident_action", required=True)
    ls = i.add_parser("list", help="recent incidents")
    ls.add_argument("--open", action="store_true", help="only unresolved ones")
    ls.set_defaults(func=_list)
    n = i.add_parser("new", help="write a postmortem skeleton prefilled with the incident's events")
    n.add_argument("--id", type=int, default=None, help="incident id (default: the latest incident)")
    n.add_argument("--title", default=None, help="open a manual incident with this title instead")
    n.add_argument("--severity", default="SEV-2", choices=["SEV-1", "SEV-2", "SEV-3"])
    n.add_argument(
        "--hours", type=float, default=2.0, help="events this long before the incident (default 2)"
    )
    n.add_argument(
        "--out", default=None, help="output directory (default monitoring.incidents.postmortem_dir)"
    )
    n.set_defaults(func=_new)


def _connect(config):
    import psycopg
    from psycopg.rows import dict_row

    from services.ops_api.tooling import load, resolve_database_url

    settings = load(config)
    url = resolve_database_url(settings)
    return settings, psycopg.connect(url, connect_timeout=5, autocommit=True, row_factory=dict_row)


def _open(config, command: str):
    """(settings, connection), or (None, exit code) after a one-line reason: 2 no database configured,
    1 the database did not answer."""
    from libs.common.errors import ConfigurationError
    from libs.common.settings import mask_url
    from services.ops_api.tooling import NoDatabase

    try:
        return _connect(config)
    except (NoDatabase, ConfigurationError) as exc:
        print(f"bnml {command}: {exc}", file=sys.stderr)
        return None, 2
    except Exception as exc:  # unreachable database: one line, password masked
        print(
            f"bnml {command}: {mask_url(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}",
            file=sys.stderr,
        )
        return None, 1


def _list(args) -> int:
    settings, conn = _open(args.config, "incident list")
    if settings is None:
        return conn
    with conn:
        rows = conn.execute(
            "SELECT id, severity, kind, title, opened_at, resolved_at FROM incidents"
            + (" WHERE resolved_at IS NULL" if args.open else "")
            + " ORDER BY opened_at DESC LIMIT 50"
        ).fetchall()
    for r in rows:
        print(
            f"{r['id']:>5} {r['severity']} {r['opened_at']:%Y-%m-%d %H:%M:%S} "
            f"{'open    ' if r['resolved_at'] is None else 'resolved'} {r['kind']:<18} {r['title']}"
        )
    if not rows:
        print("no incident recorded")
    return 0


def _new(args) -> int:
    from services.ops_api.postmortem import render

    settings, conn = _open(args.config, "incident new")
    if settings is None:
        return conn
    now = datetime.now(UTC)
    with conn:
        if args.title:
            incident = conn.execute(
                "INSERT INTO incidents (severity, kind, key, title, opened_at) VALUES (%s, 'manual', %s, %s, %s)"
                " RETURNING *",
                (args.severity, f"manual:{now.isoformat()}", args.title, now),
            ).fetchone()
            conn.execute(
                "INSERT INTO incident_events (incident_id, ts, source, summary) VALUES (%s, %s, 'operator', %s)",
                (incident["id"], now, f"opened by hand: {args.title}"),
            )
        elif args.id is not None:
            incident = conn.execute("SELECT * FROM incidents WHERE id = %s", (args.id,)).fetchone()
            if incident is None:
                print(f"bnml incident new: no incident {args.id} (`bnml incident list`)", file=sys.stderr)
                return 1
        else:
            incident = conn.execute(
                "SELECT * FROM incidents ORDER BY opened_at DESC, id DESC LIMIT 1"
            ).fetchone()
            if incident is None:
                print(
                    "bnml incident new: no incident recorded; use --title to open one by hand",
                    file=sys.stderr,
                )
                return 1
        lo = incident["opened_at"] - timedelta(hours=args.hours)
        hi = incident["resolved_at"] or now
        timeline = conn.execute(TIMELINE_SQL, {"id": incident["id"], "lo": lo, "hi": hi}).fetchall()
    out_dir = Path(args.out or settings.monitoring.incidents.postmortem_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{incident['opened_at']:%Y-%m-%d}-incident-{incident['id']}.md"
    if path.exists():
        print(f"bnml incident new: refused: {path} exists and is not overwritten", file=sys.stderr)
        return 3
    path.write_text(render(incident, timeline, now))
    print(f"wrote {path} ({len(timeline)} event(s) in the timeline)")
    return 0

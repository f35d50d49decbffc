"""`bnml backup` (force one now) and `bnml restore <dir>` (into an empty database)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bnml.commands import add_json_option


def register(sub) -> None:
    p = sub.add_parser(
        "backup", help="pg_dump the Postgres state + model pointer into artifacts/backups/<ts>/"
    )
    add_json_option(p, help="accepted for uniformity: the result is always JSON (progress goes to stderr)")
    p.set_defaults(func=_backup)
    r = sub.add_parser("restore", help="restore a backup directory into an EMPTY database")
    r.add_argument("dir", help="a backup directory, e.g. artifacts/backups/20260101T000000000000Z")
    r.add_argument("--database-url", default=None, help="target (default: DATABASE_URL / suite / config)")
    add_json_option(r, help="accepted for uniformity: the result is always JSON")
    r.set_defaults(func=_restore)


def _backup(args) -> int:
    import psycopg

    from services.ops_api.backup import make_backup
    from services.ops_api.tooling import NoDatabase, load, resolve_database_url

    try:
        settings = load(args.config)
        url = resolve_database_url(settings)
    except NoDatabase as exc:
        print(f"bnml backup: {exc}", file=sys.stderr)
        return 2
    b = settings.storage.backup
    print(f"backing up to {b.dir}/ ...", file=sys.stderr)
    res = make_backup(url, Path(b.dir), Path(b.models_dir), b.retention, timeout_s=b.timeout_s)
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO backups (started_at, finished_at, ok, path, size_bytes, error, trigger)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'cli')",
                (res.started_at, res.finished_at, res.ok, str(res.path or ""), res.size_bytes, res.error),
            )
    except Exception as exc:
        print(f"warning: backup not recorded in the database ({type(exc).__name__})", file=sys.stderr)
    if not res.ok:
        print(f"bnml backup FAILED: {res.error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {"ok": True, "path": str(res.path), "size_bytes": res.size_bytes, "pruned": res.pruned}, indent=2
        )
    )
    return 0


def _restore(args) -> int:
    from services.ops_api.backup import BackupError, restore
    from services.ops_api.tooling import NoDatabase, load, resolve_database_url

    try:
        url = args.database_url or resolve_database_url(load(args.config))
    except NoDatabase as exc:
        print(f"bnml restore: {exc}", file=sys.stderr)
        return 2
    try:
        out = restore(Path(args.dir), url)
    except BackupError as exc:
        print(f"bnml restore: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    if out.get("models_current"):
        print(
            f"note: the model pointer at backup time was {out['models_current']!r} "
            "(artifacts/models/current is not changed by a restore)",
            file=sys.stderr,
        )
    return 0

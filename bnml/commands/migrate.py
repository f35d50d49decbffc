"""`bnml migrate`: apply pending database migrations and exit (compose's one-shot `migrate` service).

Retries while the database is not reachable yet (up to --wait seconds), so it can start with Postgres.
Exit 0 when the schema is current, 2 on a configuration error, 1 when the database never answered.
"""

from __future__ import annotations

import sys
import time


def register(sub) -> None:
    p = sub.add_parser("migrate", help="apply pending database migrations (DATABASE_URL) and exit")
    p.add_argument(
        "--wait", type=float, default=60.0, help="seconds to keep retrying an unreachable database"
    )
    p.set_defaults(func=_migrate)


def _migrate(args) -> int:
    import psycopg

    from libs.common.db import migrate
    from libs.common.errors import ConfigurationError
    from libs.common.settings import load_settings, mask_url

    try:
        url = load_settings(args.config).database.url.get_secret_value()
        if not url:
            raise ConfigurationError("database.url", "empty; set DATABASE_URL")
    except ConfigurationError as exc:
        print(f"bnml migrate: {exc}", file=sys.stderr)
        return 2
    deadline, delay = time.monotonic() + args.wait, 0.5
    while True:
        try:
            n = migrate(url)
            print(f"database {mask_url(url)}: {n} migration(s) applied; schema is current")
            return 0
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                print(f"bnml migrate: database {mask_url(url)} unreachable: {exc}", file=sys.stderr)
                return 1
            print(f"database not ready ({type(exc).__name__}); retrying in {delay:.1f}s", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

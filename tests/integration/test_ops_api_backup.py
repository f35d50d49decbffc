"""Backups on a real Postgres: pg_dump + manifest, pruning, restore into an empty database row for row."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest

from services.ops_api.backup import BackupError, make_backup, restore
from tests.helpers import OPERATOR_TOKEN, ROOT, VIEWER_TOKEN, ops_api_url, wait_until, write_config

JOURNAL = (
    "SELECT * FROM orders ORDER BY client_order_id",
    "SELECT * FROM fills ORDER BY id",
    "SELECT * FROM kill_switch_audit ORDER BY id",
    "SELECT * FROM api_audit ORDER BY id",
)


def seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(50):
            conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, fee_usdt,"
                " tick_ts) VALUES (%s, %s, 'BTC/USDT', 'BUY', 0.00123, 'FILLED', 0.0512345678, now())",
                (f"c{i:03d}", f"v{i}"),
            )
            conn.execute(
                "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee,"
                " fee_asset, realized_pnl_usdt, ts) VALUES ('paper', %s, %s, 'BTC/USDT', 'BUY', 0.00123,"
                " 50123.45, 0.0616, 'USDT', -0.01, now())",
                (f"t{i}", f"c{i:03d}"),
            )
        conn.execute(
            "INSERT INTO kill_switch_audit (command_id, ts, action, engaged, reason, actor, recorded_by)"
            " VALUES ('k1', now(), 'engage', true, 'drill', 'alice', 'risk')"
        )
        conn.execute(
            "INSERT INTO api_audit (role, client, method, path, action, outcome, status_code)"
            " VALUES ('operator', '127.0.0.1', 'POST', '/backup', 'backup', 'ok', 200)"
        )


def snapshot(url: str) -> list[list[tuple]]:
    with psycopg.connect(url) as conn:
        return [conn.execute(q).fetchall() for q in JOURNAL]


@pytest.fixture
def empty_db(pg_admin_url):
    name = f"bnml_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rpartition("/")[0]
    yield f"{base}/{name}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(args: list[str], url: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_")}
    env.update(DATABASE_URL=url, PYTHONPATH=str(ROOT), BNML_CONFIG=str(write_config(cwd / "bot.yaml")))
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_bnml_backup_then_restore_into_an_empty_database_gives_the_same_journal(
    database_url, empty_db, tmp_path
):
    seed(database_url)
    (tmp_path / "artifacts" / "models").mkdir(parents=True)
    (tmp_path / "artifacts" / "models" / "current").write_text("20261120T000000Z-abc\n")
    res = cli(["backup"], database_url, tmp_path)
    assert res.returncode == 0, res.stderr
    path = tmp_path / json.loads(res.stdout)["path"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert (
        set(manifest["files"]) == {"db.dump", "models_current"}
        and manifest["models_current"] == "20261120T000000Z-abc"
    )
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["files"]["db.dump"]["sha256"])
    assert manifest["pg_dump"].startswith("pg_dump (PostgreSQL)") and manifest["server_version"][0].isdigit()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT ok, trigger FROM backups").fetchall() == [(True, "cli")]

    res = cli(["restore", str(path), "--database-url", empty_db], database_url, tmp_path)
    assert res.returncode == 0, res.stderr
    before, after = snapshot(database_url), snapshot(empty_db)
    assert [len(t) for t in after] == [50, 50, 1, 1]
    assert after == before
    # the restored audit trail is still append-only
    with pytest.raises(psycopg.errors.RaiseException), psycopg.connect(empty_db) as conn:
        conn.execute("DELETE FROM api_audit")


def test_restore_refuses_a_non_empty_database_and_a_tampered_backup(database_url, tmp_path):
    seed(database_url)
    res = make_backup(database_url, tmp_path / "b", tmp_path / "models", 5)
    assert res.ok, res.error
    with pytest.raises(BackupError, match="empty database"):
        restore(res.path, database_url)
    with open(res.path / "db.dump", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(BackupError, match="db.dump: checksum mismatch"):
        restore(res.path, database_url)


def test_old_backups_are_pruned_to_the_retention(database_url, tmp_path):
    paths = [make_backup(database_url, tmp_path / "b", tmp_path / "models", 2).path for _ in range(3)]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(p.name for p in paths[1:])


def test_a_backup_to_an_unwritable_place_fails_cleanly_without_raising(database_url, tmp_path):
    (tmp_path / "file").write_text("x")
    res = make_backup(database_url, tmp_path / "file" / "b", tmp_path / "models", 2)
    assert not res.ok and res.error


async def test_post_backup_needs_the_operator_and_records_the_run(services, database_url, tmp_path):
    services.configure(
        {
            "storage": {"backup": {"enabled": True, "interval_s": 86400, "dir": str(tmp_path / "backups")}},
        }
    )
    proc = services.start("ops_api")
    url = ops_api_url(proc)
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:

        async def accepting() -> bool:  # started (its heartbeat) is not yet serving HTTP
            try:
                await c.get("/health")
                return True
            except httpx.ConnectError:
                return False

        await wait_until(accepting, timeout=10, message=f"ops_api accepting connections at {url}")
        r = await c.post("/backup", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
        assert r.status_code == 403
        r = await c.post("/backup", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status_code == 200, r.text
        assert (tmp_path / "backups" / r.json()["path"].rsplit("/", 1)[-1] / "manifest.json").exists()
        metrics = (await c.get("/metrics")).text
        assert re.search(r"bnml_ops_api_backup_last_success_timestamp_seconds [1-9]", metrics)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT ok, trigger FROM backups").fetchall() == [(True, "api")]
        assert conn.execute("SELECT action, outcome FROM api_audit ORDER BY id").fetchall() == [
            ("POST /backup", "refused"),
            ("backup", "ok"),
        ]

"""DoD v1 on generated history in a real Postgres, through the operator commands the runbook names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta

import psycopg

from services.ops_api.dod import day_bounds
from tests.helpers import ROOT, write_config

GOOD, BAD = date(2026, 11, 18), date(2026, 11, 19)
SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def seed(url: str) -> None:
    g0, _ = day_bounds(GOOD)
    b0, _ = day_bounds(BAD)
    with psycopg.connect(url, autocommit=True) as conn:
        for svc in SERVICES:
            # full coverage both days, except risk silent 30 minutes on the bad day
            conn.execute(
                "INSERT INTO heartbeat_minutes (service, minute, beats, ok_beats, last_ts)"
                " SELECT %s, m, 60, 60, m FROM generate_series(%s::timestamptz, %s::timestamptz - interval"
                " '1 minute', interval '1 minute') m WHERE NOT (%s = 'risk' AND m >= %s AND m < %s)",
                (
                    svc,
                    g0,
                    b0 + timedelta(days=1),
                    svc,
                    b0 + timedelta(hours=5),
                    b0 + timedelta(hours=5, minutes=30),
                ),
            )
        # 200 orders a day: 1 rejected on the good day, 10 on the bad one; tick->order 20..219 ms
        for day0, rejected in ((g0, 1), (b0, 10)):
            conn.execute(
                "INSERT INTO orders (client_order_id, verdict_id, symbol, side, quantity, status, tick_ts, created_at)"
                " SELECT %s || i, %s || i, 'BTC/USDT', CASE WHEN i %% 2 = 0 THEN 'BUY' ELSE 'SELL' END, 0.001,"
                " CASE WHEN i < %s THEN 'REJECTED' ELSE 'FILLED' END,"
                " %s + i * interval '5 minutes' - (20 + i) * interval '1 millisecond', %s + i * interval '5 minutes'"
                " FROM generate_series(0, 199) i",
                (f"c{day0:%d}-", f"v{day0:%d}-", rejected, day0, day0),
            )
        # good day: 100 closing fills +1.0 / -0.5 alternating; bad day: a loss of 250 at 06:00 with no halt
        conn.execute(
            "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,"
            " realized_pnl_usdt, ts) SELECT 'paper', 'g' || i, 'c18-' || i, 'BTC/USDT', 'SELL', 0.001, 50000, 0.05,"
            " 'USDT', CASE WHEN i %% 2 = 0 THEN 1.0 ELSE -0.5 END, %s + i * interval '5 minutes'"
            " FROM generate_series(1, 100) i",
            (g0,),
        )
        conn.execute(
            "INSERT INTO fills (exchange, trade_id, client_order_id, symbol, side, quantity, price, fee, fee_asset,"
            " realized_pnl_usdt, ts) VALUES ('paper', 'b1', 'c19-72', 'BTC/USDT', 'SELL', 0.01, 50000, 0.0001, 'BTC',"
            " -250, %s)",
            (b0 + timedelta(hours=6),),
        )
        # stale: 2 min on the good day, 8 min in one stretch on the bad day
        for t0, minutes in ((g0 + timedelta(hours=1), 2), (b0 + timedelta(hours=2), 8)):
            conn.execute(
                "INSERT INTO market_status_events (symbol, status, ts) VALUES ('ETH/USDT', 'stale', %s),"
                " ('ETH/USDT', 'fresh', %s)",
                (t0, t0 + timedelta(minutes=minutes)),
            )
        conn.execute(
            "INSERT INTO backups (started_at, finished_at, ok, path) VALUES (%s, %s, true, 'x')",
            (g0 + timedelta(hours=3), g0 + timedelta(hours=3, seconds=2)),
        )
        conn.execute(
            "INSERT INTO incidents (severity, kind, key, title, opened_at) VALUES"
            " ('SEV-1', 'kill_switch', 'global', 'kill switch engaged: drill', %s)",
            (b0 + timedelta(hours=7),),
        )
        conn.execute(
            "INSERT INTO breaker_log (event_id, kind, breaker, effect, reason, ts) VALUES"
            " ('e1', 'tripped', 'volatility', 'REDUCING', 'ratio', %s),"
            " ('e2', 'tripped', 'volatility', 'REDUCING', 'ratio', %s)",
            (g0, g0 + timedelta(hours=1)),
        )
        # execution's reconciliations: clean on the good day, a mismatch left standing on the bad day
        conn.execute(
            "INSERT INTO exec_reconciliations (ts, mode, instance, ok) VALUES (%s, 'live', 'i', true),"
            " (%s, 'live', 'i', false)",
            (g0 + timedelta(hours=2), b0 + timedelta(hours=8)),
        )
        conn.execute(
            "INSERT INTO refusal_minutes (minute, reason, n) VALUES (%s, 'max_notional', 4),"
            " (%s, 'stale_market_data', 7)",
            (g0, g0 + timedelta(minutes=1)),
        )


def run(args: list[str], url: str | None, cwd, config) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNML_") and k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), BNML_CONFIG=str(config))
    if url:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_generate_report_writes_files_and_postgres_rows_with_the_right_verdicts(database_url, tmp_path):
    seed(database_url)
    config = write_config(tmp_path / "bot.yaml")
    res = run(
        ["scripts.generate_dod_report", "--days", "2", "--until", BAD.isoformat()],
        database_url,
        tmp_path,
        config,
    )
    assert res.returncode == 0, res.stderr
    assert "[1/2] 2026-11-18 PASS" in res.stderr and "[2/2] 2026-11-19 FAIL" in res.stderr
    out = tmp_path / "artifacts" / "reports" / "dod"
    good = json.loads((out / "daily" / "2026-11-18.json").read_text())
    bad = json.loads((out / "daily" / "2026-11-19.json").read_text())
    assert good["status"] == "pass", good["violations"]
    fig = good["figures"]
    assert fig["trades"] == 100 and fig["realized_pnl_usdt"] == "25" and fig["win_rate_pct"] == 50.0
    assert fig["fees_usdt"] == "5" and fig["max_drawdown_usdt"] == "0.5"
    assert fig["breaker_trips"] == {"volatility": 2}
    assert fig["refusals_by_reason"] == {"stale_market_data": 7, "max_notional": 4}
    assert 216 <= fig["tick_to_order_p99_ms"] <= 219
    failed = {name for name, c in bad["checks"].items() if c["passed"] is False}
    assert failed == {
        "heartbeat_coverage.risk",
        "stale_gap",
        "order_error_rate",
        "no_sev1_incident",
        "daily_loss_budget",
        "backup_done",
        "no_unresolved_mismatch",
    }
    assert bad["figures"]["fees_usdt"] == "5"  # 0.0001 BTC at 50000
    summary = (out / "dod_v1_summary.md").read_text()
    assert "| 2026-11-18 | PASS |" in summary and "| 2026-11-19 | FAIL | 7 |" in summary
    with psycopg.connect(database_url) as conn:
        stored = dict(conn.execute("SELECT day::text, passed FROM dod_reports").fetchall())
    assert stored == {"2026-11-18": True, "2026-11-19": False}


def test_check_exits_non_zero_with_the_violations_and_zero_on_a_clean_day(database_url, tmp_path):
    seed(database_url)
    config = write_config(tmp_path / "bot.yaml")
    bad = run(
        ["scripts.check_dod_daily", "--fail-on-violation", "--date", BAD.isoformat()],
        database_url,
        tmp_path,
        config,
    )
    assert (
        bad.returncode == 1 and "7 violation(s)" in bad.stdout and "kill switch engaged: drill" in bad.stdout
    )
    good = run(
        ["scripts.check_dod_daily", "--fail-on-violation", "--date", GOOD.isoformat()],
        database_url,
        tmp_path,
        config,
    )
    assert good.returncode == 0 and "PASS" in good.stdout
    cli = run(["bnml.cli", "dod", "check", "--date", BAD.isoformat()], database_url, tmp_path, config)
    assert cli.returncode == 1 and "order_error_rate" in cli.stdout


def test_without_any_database_the_commands_say_so_in_one_line(tmp_path):
    config = write_config(tmp_path / "bot.yaml")
    res = run(["scripts.check_dod_daily", "--fail-on-violation"], None, tmp_path, config)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "no database" in res.stderr

"""Scenario 14: a bad configuration refuses to start, naming the key; nothing starts half-configured."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.helpers import ROOT, write_config

pytestmark = pytest.mark.faults

SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def _run(name: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _env(services, config) -> dict:
    env = services.env("risk")
    env["BNML_CONFIG"] = str(config)
    return env


CASES = [
    ("wrong type", {"risk": {"max_notional_usdt": "lots"}}, "risk.max_notional_usdt"),
    ("unknown key", {"execution": {"taker_fee": 0.001}}, "execution.taker_fee"),
    ("out of range", {"monitoring": {"heartbeat_interval_s": -1}}, "monitoring.heartbeat_interval_s"),
    ("bad enum", {"paper_market_data_mode": "sometimes"}, "paper_market_data_mode"),
]


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("label,overrides,key", CASES, ids=[c[0] for c in CASES])
def test_bad_value_refuses_start_naming_the_key(services, tmp_path, name, label, overrides, key):
    config = write_config(tmp_path / f"{name}.yaml", overrides)
    res = _run(name, _env(services, config))
    assert res.returncode == 2, res.stderr[-2000:]
    assert key in res.stderr, res.stderr[-2000:]


def test_missing_database_url_refuses_start(services, tmp_path):
    env = _env(services, write_config(tmp_path / "c.yaml"))
    env.pop("DATABASE_URL")
    res = _run("execution", env)
    assert res.returncode == 2 and "database.url" in res.stderr


def test_placeholder_token_refuses_ops_api(services, tmp_path):
    env = _env(services, write_config(tmp_path / "c.yaml"))
    env["BNML_OPS_API__OPERATOR_TOKEN"] = "change-me-operator"
    res = _run("ops_api", env)
    assert res.returncode != 0 and "ops_api.operator_token" in res.stderr


def test_unparseable_yaml_refuses_start(services, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("risk: {max_notional_usdt: [unclosed\n")
    res = _run("risk", _env(services, config))
    assert res.returncode == 2 and "broken.yaml" in res.stderr


async def test_refused_start_leaves_nothing_half_configured(services, tmp_path, bus, database_url):
    config = write_config(tmp_path / "c.yaml", {"risk": {"verdict_ttl_s": "soon"}})
    streams_before = {s.config.name for s in await bus.js.streams_info()}
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS yoyo_lock")  # a refused start must not even touch the database
    res = _run("risk", _env(services, config))
    assert res.returncode == 2
    assert {s.config.name for s in await bus.js.streams_info()} == streams_before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('yoyo_lock')").fetchone()[0] is None

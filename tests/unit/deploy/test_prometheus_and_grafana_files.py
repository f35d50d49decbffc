"""Prometheus config and alert rules (promtool), Grafana provisioning and dashboard JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from tests.unit.deploy.tooling import GRAFANA_DIR, PROM_DIR, ROOT, require_binary

RUNBOOK_ALERTS = {  # runbook scenario -> the alert that covers it
    "a service down": "BnmlServiceDown",
    "stale market data": "BnmlMarketDataStale",
    "alerting down": "BnmlAlertDeliveryFailing",
    "breakers stuck": "BnmlBreakerStuck",
    "backup missing": "BnmlBackupMissing",
    "order loop (SEV-1)": "BnmlOrderLoop",
    "kill switch engaged (SEV-1)": "BnmlKillSwitchEngaged",
    "not exactly one execution writer": "BnmlExecutionWriterNotOne",
    "daily loss above 80 % of budget": "BnmlDailyLossNearBudget",
    "Alertmanager delivery failing": "BnmlAlertmanagerDeliveryFailing",
}


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=PROM_DIR)


def test_promtool_accepts_the_scrape_config_and_its_rule_files():
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "alertmanager")
    assert job["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_promtool_accepts_the_alert_rules():
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_rules_fire_in_their_scenarios_and_not_before():
    res = promtool("test", "rules", "alerts.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_runbook_scenario_has_an_alert_with_severity_and_runbook():
    rules = [r for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    missing = {k: v for k, v in RUNBOOK_ALERTS.items() if v not in names}
    assert not missing, f"runbook scenarios without an alert: {missing}"
    for r in rules:
        assert r["labels"]["severity"] in ("SEV-1", "SEV-2", "SEV-3"), r["alert"]
        assert r["annotations"].get("summary") and r["annotations"].get("runbook"), r["alert"]
    tested = set(re.findall(r"alertname:\s*(\w+)", (PROM_DIR / "alerts.test.yml").read_text()))
    assert set(RUNBOOK_ALERTS.values()) <= tested, "every runbook alert has a promtool unit test"


def test_every_rule_has_a_firing_case_and_a_quiet_case_in_the_promtool_tests():
    names = {
        r["alert"]
        for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    fires, quiet = set(), set()
    for test in yaml.safe_load((PROM_DIR / "alerts.test.yml").read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert names - fires == set(), f"rules never shown firing: {sorted(names - fires)}"
    assert names - quiet == set(), f"rules never shown quiet: {sorted(names - quiet)}"


def test_grafana_datasource_has_a_fixed_uid_and_dashboards_use_it():
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [d["uid"] for d in ds] == ["bnml-prometheus"] and ds[0]["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/bnml.yml").read_text())["providers"][0]
    assert prov["options"]["path"] == "/etc/grafana/dashboards"
    compose = (ROOT / "deploy/docker-compose.yml").read_text()
    assert "./grafana/dashboards:/etc/grafana/dashboards:ro" in compose
    boards = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    assert {b.name for b in boards} >= {"bnml-overview.json", "bnml-pipeline.json", "bnml-risk-model.json"}
    uids = set()
    for path in boards:
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, path.name
        sql_uids = {
            d["uid"]
            for d in yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/postgres.yml").read_text())[
                "datasources"
            ]
        }
        for p in panels:
            if (
                p["datasource"]["type"] == "grafana-postgresql-datasource"
            ):  # the read-only journal (test_dashboards)
                assert p["datasource"]["uid"] in sql_uids, (path.name, p["title"])
                assert p["targets"] and all(t["rawSql"].strip() for t in p["targets"]), (
                    path.name,
                    p["title"],
                )
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "bnml-prometheus"}, (
                path.name,
                p["title"],
            )
            assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), (path.name, p["title"])


def test_dashboard_json_is_what_the_builder_produces():
    res = subprocess.run(
        [sys.executable, str(GRAFANA_DIR / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr

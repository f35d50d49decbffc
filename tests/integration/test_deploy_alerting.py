"""Alerts reach a person: a real BN-ML service stops, and a real Prometheus and a real Alertmanager (Debian's
`prometheus` and `prometheus-alertmanager`) deliver BnmlServiceDown to a local webhook within the rule's `for:`
plus a margin.

Test-only intervals (the only departures from the deploy files): scrape and evaluation every second, the rule's
`for:` at FOR_S instead of a minute, and Alertmanager's group_wait / group_interval at one second. Everything else
is deploy/prometheus/prometheus.yml, deploy/prometheus/alerts.yml and the configuration deploy/alertmanager/render.py
writes from the template with ALERTMANAGER_WEBHOOK_URL, as the compose one-shot does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bnml.embedded import free_port
from tests.helpers import ServiceFactory, wait_until
from tests.unit.deploy.tooling import DEPLOY, PROM_DIR, require_binary

pytestmark = pytest.mark.integration

FOR_S = 5
MARGIN_S = 20  # scrape (1 s) + evaluation (1 s) + Alertmanager group_wait (1 s) + a slow shared machine


class Webhook:
    """A local receiver of Alertmanager's webhook JSON: every notification, with the time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, name: str, status: str = "firing") -> list[tuple[float, dict]]:
        return [
            (t, a)
            for t, n in self.received
            for a in n["alerts"]
            if a["labels"].get("alertname") == name and a["status"] == status
        ]

    def close(self) -> None:
        self.server.shutdown()


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (local)
            return True
    except OSError:
        return False


def fast_rules(tmp_path: Path) -> Path:
    """alerts.yml with BnmlServiceDown's `for:` at FOR_S (every other rule as deployed)."""
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "BnmlServiceDown":
                assert rule["for"] == "1m", "the deployed rule this test shortens"
                rule["for"] = f"{FOR_S}s"
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def prometheus_config(tmp_path: Path, metrics_port: int, am_port: int) -> Path:
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(fast_rules(tmp_path))]
    cfg["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{am_port}"]}]
    bnml = next(j for j in cfg["scrape_configs"] if j["job_name"] == "bnml")
    group = next(g for g in bnml["static_configs"] if g["labels"]["service"] == "market_data")
    bnml["static_configs"] = [{**group, "targets": [f"127.0.0.1:{metrics_port}"]}]
    cfg["scrape_configs"] = [bnml]  # the other services are not started here
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def alertmanager_config(tmp_path: Path, webhook_url: str) -> Path:
    template = yaml.safe_load((DEPLOY / "alertmanager/alertmanager.yml").read_text())
    for route in [template["route"], *template["route"]["routes"]]:
        if "group_wait" in route:
            route["group_wait"] = "1s"
        if "group_interval" in route:
            route["group_interval"] = "1s"
    fast = tmp_path / "alertmanager.template.yml"
    fast.write_text(yaml.safe_dump(template))
    out = tmp_path / "alertmanager.yml"
    res = subprocess.run(
        [sys.executable, str(DEPLOY / "alertmanager/render.py"), "--template", str(fast), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "ALERTMANAGER_WEBHOOK_URL": webhook_url},
    )
    assert res.returncode == 0, res.stderr
    return out


async def test_a_stopped_service_is_alerted_at_the_webhook_within_for_plus_a_margin(tmp_path, nats_url):
    prometheus = require_binary("prometheus", "prometheus")
    alertmanager = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    hook = Webhook()
    metrics_port, am_port, prom_port = free_port(), free_port(), free_port()
    services = ServiceFactory(tmp_path, nats_url, "")
    procs: list[subprocess.Popen] = []
    try:
        market_data = services.start("market_data", env={"BNML_MARKET_DATA__METRICS_PORT": str(metrics_port)})
        procs.append(
            start(
                [
                    alertmanager,
                    f"--config.file={alertmanager_config(tmp_path, hook.url)}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                tmp_path / "alertmanager.log",
            )
        )
        procs.append(
            start(
                [
                    prometheus,
                    f"--config.file={prometheus_config(tmp_path, metrics_port, am_port)}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prometheus.log",
            )
        )
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        await wait_until(
            lambda: ready(f"http://127.0.0.1:{am_port}/-/ready"), timeout=30, message="alertmanager"
        )
        await wait_until(lambda: ready(f"{api}/targets"), timeout=30, message="prometheus")

        def query(expr: str) -> list[dict]:
            url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (local)
                return json.loads(r.read())["data"]["result"]

        await wait_until(
            lambda: query('up{service="market_data"} == 1'),
            timeout=30,
            interval=0.5,
            message="market_data scraped up",
        )
        # the control: scraped up for longer than the rule's `for:` (as Prometheus itself records it), and
        # nothing has been delivered
        window = f"{FOR_S + 3}s"
        await wait_until(
            lambda: query(
                f'count_over_time(up{{service="market_data"}}[{window}]) >= {FOR_S + 1} '
                f'and min_over_time(up{{service="market_data"}}[{window}]) == 1'
            ),
            timeout=30,
            interval=0.5,
            message=f"market_data up for {window}",
        )
        assert hook.alerts("BnmlServiceDown") == [], "a running service must not be reported down"

        stopped_at = time.monotonic()
        market_data.stop()
        await wait_until(
            lambda: hook.alerts("BnmlServiceDown"),
            timeout=FOR_S + MARGIN_S + 10,
            interval=0.2,
            message="BnmlServiceDown at the webhook",
        )
        arrived, alert = hook.alerts("BnmlServiceDown")[0]
        assert arrived - stopped_at <= FOR_S + MARGIN_S, (
            f"delivered {arrived - stopped_at:.1f} s after the stop"
        )
        assert arrived - stopped_at >= FOR_S, "not before the rule's for:"
        assert alert["labels"]["service"] == "market_data" and alert["labels"]["severity"] == "SEV-2"
        assert "market_data is down" in alert["annotations"]["summary"]
        assert alert["annotations"]["runbook"]
    finally:
        services.stop_all()
        for p in procs:
            stop(p)
        hook.close()

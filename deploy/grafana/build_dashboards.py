"""Build the Grafana dashboards (JSON under deploy/grafana/dashboards/) from the panel lists below.

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if a JSON file is out of date

Every query uses metric names the services export (`bnml_<service>_<thing>_<unit>`);
tests/integration/test_deploy_observability.py runs each one against a real Prometheus scraping the suite and
fails on a query that errors or returns nothing. Grafana's `$__rate_interval` is the only macro used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "bnml-prometheus"}


class Board:
    def __init__(self, uid: str, title: str, description: str, tags: list[str]):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict] = []
        self.x = self.y = self.row_h = 0

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1, "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}})
        self.y += 1

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], *, w: int = 8, h: int = 7,
              unit: str = "short", description: str = "", thresholds: list[tuple[float | None, str]] | None = None,
              mappings: list[dict] | None = None, decimals: int | None = None, stack: bool = False) -> None:
        steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
        defaults: dict = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                          "mappings": mappings or []}
        if decimals is not None:
            defaults["decimals"] = decimals
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                                  "spanNulls": True, "stacking": {"mode": "normal" if stack else "none"}}
        else:
            defaults["color"] = {"mode": "thresholds"}
        options: dict = {}
        if kind == "stat":
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                       "justifyMode": "auto", "orientation": "auto"}
        elif kind == "timeseries":
            options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                       "tooltip": {"mode": "multi", "sort": "desc"}}
        elif kind == "table":
            options = {"showHeader": True}
        self.panels.append({
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": self._place(w, h), "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options,
            "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                         "instant": kind in ("stat", "table"), "range": kind == "timeseries"}
                        for i, (expr, legend) in enumerate(targets)],
        })

    def json(self) -> dict:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": self.tags,
            "timezone": "utc", "editable": False, "graphTooltip": 1, "refresh": "10s", "schemaVersion": 39,
            "version": 1, "time": {"from": "now-1h", "to": "now"}, "templating": {"list": []},
            "annotations": {"list": []}, "links": [
                {"title": t, "type": "link", "url": f"/d/{u}", "targetBlank": False}
                for u, t in (("bnml-overview", "Overview"), ("bnml-pipeline", "Pipeline"),
                             ("bnml-risk-model", "Risk and model health")) if u != self.uid],
            "panels": self.panels,
        }


UP_MAP = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}, "1": {"text": "UP", "color": "green"}}}]
RED_GREEN = [(None, "red"), (1, "green")]
SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def overview() -> Board:
    b = Board("bnml-overview", "BN-ML overview", "Trading state, kill switch, P&L, equity, drawdown, orders.",
              ["bnml"])
    b.row("Suite")
    b.panel("stat", "Services up", [('up{job="bnml"}', "{{service}}")], w=12, h=4, mappings=UP_MAP,
            thresholds=RED_GREEN, description="Prometheus can scrape the service's /metrics")
    b.panel("stat", "NATS connected", [(f"bnml_{s}_nats_connected", s) for s in SERVICES], w=12, h=4,
            mappings=UP_MAP, thresholds=RED_GREEN)
    b.row("Orders")
    b.panel("timeseries", "Order events by status (per minute)",
            [("sum by (status) (rate(bnml_execution_orders_total[$__rate_interval])) * 60", "{{status}}")],
            w=12, unit="short")
    b.panel("timeseries", "Fills (per minute)",
            [("sum by (liquidity) (rate(bnml_execution_fills_total[$__rate_interval])) * 60", "{{liquidity}}")],
            w=6)
    b.panel("stat", "Open orders", [("bnml_execution_open_orders", "open")], w=6, h=7,
            thresholds=[(None, "green"), (20, "orange"), (100, "red")])
    return b


def pipeline() -> Board:
    b = Board("bnml-pipeline", "BN-ML pipeline", "Rates and latencies per hop, DLQ, staleness per symbol.",
              ["bnml"])
    b.row("Rates")
    b.panel("timeseries", "Ticks published per second (market_data)",
            [("sum by (symbol) (rate(bnml_market_data_ticks_published_total[$__rate_interval]))", "{{symbol}}")],
            unit="short", stack=True)
    b.panel("timeseries", "Ticks in (signal) and signals out by side",
            [("sum(rate(bnml_signal_ticks_received_total[$__rate_interval]))", "ticks in"),
             ("sum by (side) (rate(bnml_signal_signals_published_total[$__rate_interval]))", "signals {{side}}")])
    b.panel("timeseries", "Verdicts per second by outcome (risk)",
            [("sum by (outcome) (rate(bnml_risk_verdicts_total[$__rate_interval]))", "{{outcome}}")])
    b.row("Latency")
    b.panel("timeseries", "Tick -> order (journaled paper fill), p50 / p99",
            [("histogram_quantile(0.5, sum by (le) (rate(bnml_execution_tick_to_order_seconds_bucket"
              "[$__rate_interval])))", "p50"),
             ("histogram_quantile(0.99, sum by (le) (rate(bnml_execution_tick_to_order_seconds_bucket"
              "[$__rate_interval])))", "p99")], w=12, unit="s")
    b.panel("timeseries", "Verdict -> fill, p50 / p99",
            [("histogram_quantile(0.5, sum by (le) (rate(bnml_execution_verdict_to_fill_seconds_bucket"
              "[$__rate_interval])))", "p50"),
             ("histogram_quantile(0.99, sum by (le) (rate(bnml_execution_verdict_to_fill_seconds_bucket"
              "[$__rate_interval])))", "p99")], w=12, unit="s")
    b.row("Dead letters and staleness")
    b.panel("timeseries", "Dead-lettered messages (per minute) by service and subject",
            [('sum by (service, subject) (rate({__name__=~"bnml_[a-z_]+_dlq_messages_total"}[$__rate_interval]))'
              " * 60", "{{service}} {{subject}}")], w=12)
    b.panel("timeseries", "Market data age per symbol",
            [("bnml_market_data_symbol_age_seconds", "{{symbol}}")], w=6, unit="s")
    b.panel("stat", "Stale symbols", [("bnml_market_data_stale_symbols", "stale")], w=6,
            thresholds=[(None, "green"), (1, "red")])
    return b


def risk_model() -> Board:
    b = Board("bnml-risk-model", "BN-ML risk and model health",
              "Verdicts by refusal reason, execution refusals, alert delivery.", ["bnml"])
    b.row("Risk")
    b.panel("timeseries", "Refused verdicts by reason (per minute)",
            [('sum by (reason) (rate(bnml_risk_verdicts_total{outcome!="approved"}[$__rate_interval])) * 60',
              "{{reason}}")], w=12)
    b.panel("table", "Verdicts by outcome and reason (total)",
            [("sum by (outcome, reason) (bnml_risk_verdicts_total)", "")], w=12)
    b.row("Operations")
    b.panel("timeseries", "Alerts received by severity (per hour)",
            [("sum by (severity) (increase(bnml_ops_api_alerts_total[1h]))", "{{severity}}")], w=12)
    return b


BOARDS = {"bnml-overview.json": overview, "bnml-pipeline.json": pipeline, "bnml-risk-model.json": risk_model}


def render() -> dict[str, str]:
    return {name: json.dumps(build().json(), indent=2) + "\n" for name, build in BOARDS.items()}


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run: python deploy/grafana/build_dashboards.py")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
